//! API version negotiation: `/v1.NN/` prefixes and the versions served.

use super::*;

pub const API_VERSION: &str = "1.45";
pub const MIN_API_VERSION: &str = "1.24";

pub(crate) fn version_tuple(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Strips `/v1.NN` from the path, refusing versions outside what we serve (Docker's messages).
pub(crate) fn strip_version(uri: &Uri) -> Result<Option<Uri>, ApiError> {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(None);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some(v) = version_tuple(ver) else {
        return Ok(None);
    };
    let max = version_tuple(API_VERSION).unwrap_or((1, 45));
    let min = version_tuple(MIN_API_VERSION).unwrap_or((1, 24));
    if v > max {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if v < min {
        return Err(ApiError::bad_request(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    let pq = match uri.query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    Ok(pq.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_stripped_and_checked() {
        let u: Uri = "/v1.45/containers/json?all=1".parse().unwrap();
        assert_eq!(
            strip_version(&u).unwrap().unwrap().to_string(),
            "/containers/json?all=1"
        );
        let u: Uri = "/v1.99/info".parse().unwrap();
        assert!(strip_version(&u).unwrap_err().message.contains("too new"));
        let u: Uri = "/v1.12/info".parse().unwrap();
        assert!(strip_version(&u).unwrap_err().message.contains("too old"));
        let u: Uri = "/info".parse().unwrap();
        assert!(strip_version(&u).unwrap().is_none());
    }
}
