//! The container's user: `-u NAME|UID[:GROUP|GID]` and `--group-add` resolved against the
//! container's own `/etc/passwd` and `/etc/group`, as dockerd (moby/sys/user) does.

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: those listing the user by name, then `--group-add`.
    pub additional_gids: Vec<u32>,
    /// The passwd entry's home, else `/`.
    pub home: String,
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct Group<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if l.starts_with('#') || f.len() < 6 {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = Group<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if l.starts_with('#') || f.len() < 3 {
            return None;
        }
        Some(Group {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|x| !x.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` (Config.User) and `group_add` (HostConfig.GroupAdd) with the container's
/// passwd and group files (`None` when the image has none). Errors are dockerd's words.
pub fn resolve(
    spec: &str,
    group_add: &[String],
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, String> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    let user_num: Option<u32> = user_arg.parse().ok();
    let entry = passwd.and_then(|p| {
        passwd_entries(p).find(|e| {
            if user_arg.is_empty() {
                e.uid == 0
            } else {
                e.name == user_arg || user_num == Some(e.uid)
            }
        })
    });
    let user_name = match (&entry, user_num) {
        (Some(e), _) => {
            out.uid = e.uid;
            out.gid = e.gid;
            out.home = e.home.to_string();
            Some(e.name.to_string())
        }
        (None, Some(n)) => {
            out.uid = n;
            None
        }
        (None, None) if user_arg.is_empty() => None,
        (None, None) => {
            return Err(format!(
                "unable to find user {user_arg}: no matching entries in passwd file"
            ))
        }
    };
    let find_group = |name: &str| -> Result<u32, String> {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        group
            .and_then(|g| group_entries(g).find(|e| e.name == name))
            .map(|e| e.gid)
            .ok_or_else(|| {
                format!("unable to find group {name}: no matching entries in group file")
            })
    };
    match group_arg {
        Some(g) if !g.is_empty() => out.gid = find_group(g)?,
        _ => {
            // Supplementary groups come with the implicit form only, as in moby/sys/user.
            if let (Some(name), Some(g)) = (&user_name, group) {
                for e in group_entries(g) {
                    if e.members.contains(&name.as_str()) && !out.additional_gids.contains(&e.gid) {
                        out.additional_gids.push(e.gid);
                    }
                }
            }
        }
    }
    for g in group_add {
        let gid = find_group(g)?;
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1000:\naudio:x:29:\n";

    fn r(spec: &str, add: &[&str]) -> Result<ExecUser, String> {
        let add: Vec<String> = add.iter().map(|s| s.to_string()).collect();
        resolve(spec, &add, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers_resolve_as_dockerd_does() {
        let root = r("", &[]).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let app = r("app", &[]).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![50]);
        assert_eq!(r("1000", &[]).unwrap().home, "/home/app");
        let unknown_uid = r("4242", &[]).unwrap();
        assert_eq!(
            (unknown_uid.uid, unknown_uid.gid, unknown_uid.home.as_str()),
            (4242, 0, "/")
        );
        let with_group = r("app:staff", &[]).unwrap();
        assert_eq!((with_group.gid, with_group.additional_gids.len()), (50, 0));
        assert_eq!(r("1:2", &[]).unwrap().gid, 2);
        assert_eq!(
            r("app", &["audio", "7"]).unwrap().additional_gids,
            vec![50, 29, 7]
        );
    }

    #[test]
    fn unknown_names_fail_with_dockers_message() {
        assert_eq!(
            r("nobody", &[]).unwrap_err(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:wheel", &[]).unwrap_err(),
            "unable to find group wheel: no matching entries in group file"
        );
        assert!(r("app", &["wheel"]).is_err());
        assert!(resolve("app", &[], None, None).is_err());
        assert_eq!(resolve("", &[], None, None).unwrap().home, "/");
    }
}
