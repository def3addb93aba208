//! `docker cp`: paths of a container's filesystem read into a tar stream and tar streams
//! written into it, with every path resolved inside the container's root.
//!
//! Each lookup is one `openat2(RESOLVE_IN_ROOT)` from a descriptor of the container's root, so
//! the kernel resolves every component and every symlink met on the way (`/`, `../..`,
//! absolute targets) as if the root were `/`. What is found is then used through descriptors
//! and single names (`openat(O_NOFOLLOW)`, `mkdirat`, `unlinkat` relative to the parent
//! directory's descriptor), never by path again: a symlink swapped in by the container while a
//! copy runs (Docker's CVE-2018-15664) cannot lead outside the root.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

/// How a path is opened below the root.
fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: OFlag, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| einval("NUL in path"))?;
    // SAFETY: open_how is plain integers; all zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | OFlag::O_CLOEXEC).bits() as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the right size.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) && e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn einval(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, m.to_string())
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

/// A container's root directory, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

/// What `stat` of a container path gives, in Docker's `X-Docker-Container-Path-Stat` terms.
#[derive(Debug, Clone)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub st_mode: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub link_target: String,
}

impl PathStat {
    /// Go's `os.FileMode` of the file (type bits high, permission bits low).
    pub fn go_mode(&self) -> u32 {
        let perm = self.st_mode & 0o777;
        let mut m = perm;
        match self.st_mode & libc::S_IFMT {
            libc::S_IFDIR => m |= 1 << 31,
            libc::S_IFLNK => m |= 1 << 27,
            libc::S_IFIFO => m |= 1 << 25,
            libc::S_IFSOCK => m |= 1 << 24,
            libc::S_IFBLK => m |= 1 << 26,
            libc::S_IFCHR => m |= (1 << 26) | (1 << 21),
            _ => {}
        }
        if self.st_mode & libc::S_ISUID != 0 {
            m |= 1 << 23;
        }
        if self.st_mode & libc::S_ISGID != 0 {
            m |= 1 << 22;
        }
        if self.st_mode & libc::S_ISVTX != 0 {
            m |= 1 << 20;
        }
        m
    }

    pub fn is_dir(&self) -> bool {
        self.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// The JSON dockerd sends (base64 in the header): Go's field order, and Go's
    /// RFC3339Nano time (trailing zeros of the fraction dropped).
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Stat<'a> {
            name: &'a str,
            size: i64,
            mode: u32,
            mtime: String,
            link_target: &'a str,
        }
        let t = chrono::DateTime::from_timestamp(self.mtime, self.mtime_nsec as u32)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mtime = match t.split_once('.') {
            Some((secs, frac)) => {
                let frac = frac.trim_end_matches('Z').trim_end_matches('0');
                if frac.is_empty() {
                    format!("{secs}Z")
                } else {
                    format!("{secs}.{frac}Z")
                }
            }
            None => t,
        };
        serde_json::to_string(&Stat {
            name: &self.name,
            size: self.size,
            mode: self.go_mode(),
            mtime,
            link_target: &self.link_target,
        })
        .unwrap_or_default()
    }
}

/// Errors in dockerd's terms.
#[derive(Debug)]
pub enum ArchiveError {
    /// The path does not exist (404 "Could not find the file ...").
    NotFound,
    /// The request cannot be done (400), with the reason.
    Invalid(String),
    Io(io::Error),
}

impl From<io::Error> for ArchiveError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            ArchiveError::NotFound
        } else {
            ArchiveError::Io(e)
        }
    }
}

impl From<nix::Error> for ArchiveError {
    fn from(e: nix::Error) -> Self {
        io::Error::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(
        Some(fd.as_raw_fd()),
        "",
        AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// `openat(dir, name)` of one name, never following a final symlink, as an owned descriptor.
fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode,
    )?;
    // SAFETY: a new descriptor from openat(2) that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`open_at`] of a directory, for reading its entries.
fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
}

fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<FileStat> {
    nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(io::Error::from)
}

/// A path of the container, cleaned lexically (`/a/./b/` is `/a/b`; `..` stays inside `/`).
pub fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn split(path: &Path) -> (PathBuf, Option<&OsStr>) {
    match path.file_name() {
        Some(n) => (
            path.parent().unwrap_or(Path::new("/")).to_path_buf(),
            Some(n),
        ),
        None => (PathBuf::from("/"), None),
    }
}

impl Root {
    /// The root at `dir` (a mounted rootfs, or `/proc/<pid>/root` of a running container).
    pub fn open(dir: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: a new descriptor from open(2).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Root { fd })
    }

    /// The directory `path` of the container, opened inside the root (symlinks resolved in
    /// it): an `O_PATH` descriptor, read through `/proc/self/fd/N`.
    pub fn open_dir(&self, path: &str) -> io::Result<OwnedFd> {
        self.resolve(
            &clean(path),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        )
    }

    /// Like [`Root::open_dir`], making the directory (`mkdir -p`, inside the root) when
    /// missing: a volume's mount point in a container that never ran.
    pub fn make_dir(&self, path: &str) -> io::Result<OwnedFd> {
        let p = clean(path);
        if let Ok(fd) = self.open_dir(path) {
            return Ok(fd);
        }
        let (parent, name) = self.make_parent(&p).map_err(|e| match e {
            ArchiveError::Io(e) => e,
            ArchiveError::NotFound => io::Error::from(io::ErrorKind::NotFound),
            ArchiveError::Invalid(m) => io::Error::other(m),
        })?;
        if let Some(n) = name {
            match nix::sys::stat::mkdirat(
                Some(parent.as_raw_fd()),
                n.as_os_str(),
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.open_dir(path)
    }

    /// Opens `path` (cleaned, absolute in the container) inside the root.
    fn resolve(&self, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        openat2(self.fd.as_fd(), rel, flags, IN_ROOT)
    }

    /// The parent directory of `path` (opened) and its last name; `None` for `/`.
    fn parent_of(&self, path: &Path) -> io::Result<(OwnedFd, Option<std::ffi::OsString>)> {
        let (parent, name) = split(path);
        let fd = self.resolve(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        Ok((fd, name.map(|n| n.to_os_string())))
    }

    /// `stat` of `path` without following a final symlink; its target, when it is one, made
    /// absolute in the container, as dockerd reports it.
    pub fn stat(&self, path: &str) -> Result<PathStat> {
        let p = clean(path);
        let fd = self.resolve(&p, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        let st = fstat(fd.as_fd())?;
        let mut link_target = String::new();
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            let (parent, name) = self.parent_of(&p)?;
            let target = nix::fcntl::readlinkat(
                Some(parent.as_raw_fd()),
                name.as_deref().unwrap_or(OsStr::new(".")),
            )?;
            let target = Path::new(&target);
            let abs = if target.is_absolute() {
                clean(&target.to_string_lossy())
            } else {
                clean(
                    &p.parent()
                        .unwrap_or(Path::new("/"))
                        .join(target)
                        .to_string_lossy(),
                )
            };
            link_target = abs.to_string_lossy().into_owned();
        }
        let name = match p.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => "/".to_string(),
        };
        Ok(PathStat {
            name,
            size: st.st_size,
            st_mode: st.st_mode,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            link_target,
        })
    }

    /// Writes a tar of `path` to `out`: the file, or the directory and all below it, named
    /// from the path's last name (`.` for the contents of a directory given as `dir/.`), as
    /// dockerd's archive does.
    pub fn tar_to(&self, path: &str, out: impl Write) -> Result<()> {
        let p = clean(path);
        let contents_only = path.ends_with("/.");
        let base = if contents_only {
            PathBuf::from(".")
        } else {
            PathBuf::from(p.file_name().unwrap_or(OsStr::new(".")))
        };
        let (parent, name) = self.parent_of(&p)?;
        let mut w = TarWriter::new(out, false, Vec::new());
        match name {
            Some(n) => w.add(parent.as_fd(), &n, &base)?,
            None => {
                let root = self.resolve(Path::new("/"), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                w.add_dir_contents(root, &base, true)?;
            }
        }
        w.tar.into_inner()?.flush()?;
        Ok(())
    }

    /// Writes a tar of everything below the root, names relative to it (`docker export`).
    pub fn tar_contents(&self, out: impl Write) -> Result<()> {
        let root = self.resolve(Path::new("/"), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut w = TarWriter::new(out, false, Vec::new());
        w.add_dir_contents(root, Path::new(""), true)?;
        w.tar.into_inner()?.flush()?;
        Ok(())
    }

    /// Writes this root (an overlay upper directory) as an image layer: whiteouts and opaque
    /// directories in OCI's form, the container's empty mount points left out.
    pub fn tar_layer(&self, out: impl Write) -> Result<()> {
        let root = self.resolve(Path::new("/"), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut w = TarWriter::new(out, true, init_paths());
        w.add_dir_contents(root, Path::new(""), true)?;
        w.tar.into_inner()?.flush()?;
        Ok(())
    }

    /// The changes this root (an overlay upper directory) holds over `in_lower` (whether a
    /// path exists below): Docker's `(path, kind)` with 0 changed, 1 added, 2 deleted, sorted.
    pub fn changes(&self, in_lower: &dyn Fn(&str) -> bool) -> Result<Vec<(String, u8)>> {
        let root = self.resolve(Path::new("/"), OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut out = Vec::new();
        let skip = init_paths();
        walk_changes(&root, Path::new(""), &skip, in_lower, &mut out)?;
        out.sort();
        Ok(out)
    }

    /// Extracts the tar `input` into the directory `dest`, which must exist. `copy_owner`
    /// keeps the archive's uid and gid (`docker cp -a`), else root owns what is made;
    /// `no_overwrite_dir_non_dir` refuses to replace a directory with a non-directory or the
    /// reverse.
    pub fn extract(
        &self,
        dest: &str,
        input: impl Read,
        copy_owner: bool,
        no_overwrite_dir_non_dir: bool,
    ) -> Result<()> {
        let dest = clean(dest);
        let fd = self.resolve(&dest, OFlag::O_PATH)?;
        if fstat(fd.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(ArchiveError::Invalid(
                "extraction point is not a directory".into(),
            ));
        }
        let mut input = io::BufReader::with_capacity(1 << 20, input);
        // One buffer for every file's data: io::copy's 8 KiB would cost a write per 8 KiB.
        let mut buf = vec![0u8; 1 << 20];
        let gz = {
            let head = input.fill_buf_peek()?;
            head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
        };
        let reader: Box<dyn Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(input))
        } else {
            Box::new(input)
        };
        let mut archive = tar::Archive::new(reader);
        let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
        for entry in archive.entries().map_err(ArchiveError::Io)? {
            let mut entry = entry.map_err(ArchiveError::Io)?;
            let rel = entry.path().map_err(ArchiveError::Io)?.into_owned();
            let Some(rel) = inside(&rel) else {
                return Err(ArchiveError::Invalid(format!(
                    "invalid path in the archive: {}",
                    rel.display()
                )));
            };
            if rel.as_os_str().is_empty() {
                continue;
            }
            let target = dest.join(&rel);
            let (parent, name) = self.make_parent(&target)?;
            let name = name.ok_or_else(|| ArchiveError::Invalid("empty name".into()))?;
            let hdr = entry.header().clone();
            let kind = hdr.entry_type();
            let is_dir = kind.is_dir();
            match stat_at(parent.as_fd(), &name) {
                Ok(existing) => {
                    let existing_dir = existing.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    if no_overwrite_dir_non_dir && existing_dir && !is_dir {
                        return Err(ArchiveError::Invalid(format!(
                            "cannot overwrite directory {:?} with non-directory {:?}",
                            target.display().to_string(),
                            rel.display().to_string()
                        )));
                    }
                    if no_overwrite_dir_non_dir && !existing_dir && is_dir {
                        return Err(ArchiveError::Invalid(format!(
                            "cannot overwrite non-directory {:?} with directory {:?}",
                            target.display().to_string(),
                            rel.display().to_string()
                        )));
                    }
                    if !(existing_dir && is_dir) {
                        remove_all_at(parent.as_fd(), &name)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            let mode = hdr.mode().unwrap_or(0o644) & 0o7777;
            let dirfd = parent.as_raw_fd();
            match kind {
                tar::EntryType::Directory => {
                    match nix::sys::stat::mkdirat(
                        Some(dirfd),
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    ) {
                        Ok(()) | Err(nix::Error::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    dir_times.push((target.clone(), hdr.mtime().unwrap_or(0) as i64));
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let mut f = File::from(open_at(
                        parent.as_fd(),
                        &name,
                        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
                        Mode::from_bits_truncate(0o600),
                    )?);
                    loop {
                        let n = match entry.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(ArchiveError::Io(e)),
                        };
                        f.write_all(&buf[..n]).map_err(ArchiveError::Io)?;
                    }
                }
                tar::EntryType::Symlink => {
                    let target = hdr
                        .link_name()
                        .map_err(ArchiveError::Io)?
                        .ok_or_else(|| ArchiveError::Invalid("symlink without a target".into()))?;
                    nix::unistd::symlinkat(target.as_ref(), Some(dirfd), name.as_os_str())?;
                }
                tar::EntryType::Link => {
                    let link = hdr.link_name().map_err(ArchiveError::Io)?.ok_or_else(|| {
                        ArchiveError::Invalid("hard link without a target".into())
                    })?;
                    let Some(link) = inside(&link) else {
                        return Err(ArchiveError::Invalid(format!(
                            "invalid hard link target: {}",
                            link.display()
                        )));
                    };
                    let src = self.resolve(&dest.join(link), OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
                    nix::unistd::linkat(
                        Some(src.as_raw_fd()),
                        Path::new(""),
                        Some(dirfd),
                        Path::new(&name),
                        nix::unistd::LinkatFlags::AT_EMPTY_PATH,
                    )?;
                    continue;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let kind_bits = match kind {
                        tar::EntryType::Char => nix::sys::stat::SFlag::S_IFCHR,
                        tar::EntryType::Block => nix::sys::stat::SFlag::S_IFBLK,
                        _ => nix::sys::stat::SFlag::S_IFIFO,
                    };
                    let dev = nix::sys::stat::makedev(
                        hdr.device_major().ok().flatten().unwrap_or(0) as u64,
                        hdr.device_minor().ok().flatten().unwrap_or(0) as u64,
                    );
                    nix::sys::stat::mknodat(
                        Some(dirfd),
                        name.as_os_str(),
                        kind_bits,
                        Mode::from_bits_truncate(0o600),
                        dev,
                    )?;
                }
                // PAX and GNU long-name records are read by the tar crate itself; others are
                // skipped, as Go's archive/tar does.
                _ => continue,
            }
            let (uid, gid) = if copy_owner {
                (hdr.uid().unwrap_or(0) as u32, hdr.gid().unwrap_or(0) as u32)
            } else {
                (0, 0)
            };
            // berthd runs as root; a test as another user keeps its own ownership.
            if nix::unistd::geteuid().is_root() {
                nix::unistd::fchownat(
                    Some(dirfd),
                    name.as_os_str(),
                    Some(uid.into()),
                    Some(gid.into()),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            if kind != tar::EntryType::Symlink {
                // fchmodat has no no-follow mode on Linux; a symlink was ruled out above and
                // the name was just made by this extraction.
                nix::sys::stat::fchmodat(
                    Some(dirfd),
                    name.as_os_str(),
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )?;
            }
            if !is_dir {
                set_mtime(parent.as_fd(), &name, hdr.mtime().unwrap_or(0) as i64)?;
            }
        }
        // Directories' times last: their entries changed them.
        for (dir, mtime) in dir_times.into_iter().rev() {
            if let Ok((parent, Some(name))) = self.parent_of(&dir) {
                let _ = set_mtime(parent.as_fd(), &name, mtime);
            }
        }
        Ok(())
    }

    /// The parent directory of `path`, made (`mkdir -p`, inside the root) when missing.
    fn make_parent(&self, path: &Path) -> Result<(OwnedFd, Option<std::ffi::OsString>)> {
        match self.parent_of(path) {
            Ok(x) => return Ok(x),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let (parent, name) = split(path);
        let mut cur = PathBuf::from("/");
        for c in parent.components() {
            let Component::Normal(n) = c else { continue };
            let dir = self.resolve(&cur, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            match nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), n, Mode::from_bits_truncate(0o755))
            {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
            cur.push(n);
        }
        let fd = self.resolve(&cur, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        Ok((fd, name.map(|n| n.to_os_string())))
    }
}

fn walk_changes(
    dir: &OwnedFd,
    rel: &Path,
    skip: &[PathBuf],
    in_lower: &dyn Fn(&str) -> bool,
    out: &mut Vec<(String, u8)>,
) -> Result<bool> {
    let mut any = false;
    for n in dir_names(dir)? {
        let child = rel.join(&n);
        let path = format!("/{}", child.display());
        let st = match stat_at(dir.as_fd(), &n) {
            Ok(st) => st,
            Err(_) => continue,
        };
        if skip.contains(&child) && is_empty_mount_point(dir.as_fd(), &n, &st) {
            continue;
        }
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFCHR && st.st_rdev == 0 {
            out.push((path, 2));
            any = true;
            continue;
        }
        let existed = in_lower(&path);
        if fmt == libc::S_IFDIR {
            let sub = open_dir_at(dir.as_fd(), &n)?;
            let below = walk_changes(&sub, &child, skip, in_lower, out)?;
            // A directory copied up only because something below it changed shows as
            // changed, as in dockerd; one that only holds mount points does not show.
            if !existed || below || is_opaque(&sub) {
                out.push((path, if existed { 0 } else { 1 }));
                any = true;
            }
        } else {
            out.push((path, if existed { 0 } else { 1 }));
            any = true;
        }
    }
    Ok(any)
}

/// A relative archive path that stays below its extraction point (`a/../b` is `b`; one that
/// climbs above it is refused).
fn inside(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn set_mtime(dir: BorrowedFd<'_>, name: &OsStr, mtime: i64) -> io::Result<()> {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        Some(dir.as_raw_fd()),
        name,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// `rm -rf name` in `dir`, through descriptors only.
fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let st = stat_at(dir, name)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(io::Error::from);
    }
    let sub = open_dir_at(dir, name)?;
    for n in dir_names(&sub)? {
        remove_all_at(sub.as_fd(), &n)?;
    }
    nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name,
        nix::unistd::UnlinkatFlags::RemoveDir,
    )
    .map_err(io::Error::from)
}

/// The names in an open directory (without `.` and `..`), sorted.
fn dir_names(dir: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let dup = nix::unistd::dup(dir.as_raw_fd())?;
    let mut d = nix::dir::Dir::from_fd(dup)?;
    let mut names: Vec<std::ffi::OsString> = d
        .iter()
        .flatten()
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

struct TarWriter<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of files with several links, and the archive name of the first.
    links: HashMap<(u64, u64), PathBuf>,
    /// An overlay upper directory written as an image layer: whiteouts (0/0 character
    /// devices) become `.wh.NAME` files and opaque directories get `.wh..wh..opq`.
    layer: bool,
    /// Archive names left out (mount points made for the container, see [`init_paths`]).
    skip: Vec<PathBuf>,
}

impl<W: Write> TarWriter<W> {
    fn new(out: W, layer: bool, skip: Vec<PathBuf>) -> Self {
        TarWriter {
            tar: tar::Builder::new(out),
            links: HashMap::new(),
            layer,
            skip,
        }
    }

    fn empty_file(&mut self, st: &FileStat, name: &Path) -> Result<()> {
        let mut h = Self::header(st, tar::EntryType::Regular);
        h.set_mode(0o644);
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(ArchiveError::Io)
    }

    fn header(st: &FileStat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    /// Adds `name` of the directory `dir` as `as_name`, and what is below it.
    fn add(&mut self, dir: BorrowedFd<'_>, name: &OsStr, as_name: &Path) -> Result<()> {
        let st = stat_at(dir, name)?;
        let fmt = st.st_mode & libc::S_IFMT;
        if self.skip.iter().any(|s| s == as_name) && is_empty_mount_point(dir, name, &st) {
            return Ok(());
        }
        if self.layer && fmt == libc::S_IFCHR && st.st_rdev == 0 {
            let wh = as_name.with_file_name(format!(".wh.{}", name.to_string_lossy()));
            return self.empty_file(&st, &wh);
        }
        match fmt {
            libc::S_IFDIR => {
                let sub = open_dir_at(dir, name)?;
                let mut h = Self::header(&st, tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, dir_name(as_name), io::empty())
                    .map_err(ArchiveError::Io)?;
                if self.layer && is_opaque(&sub) {
                    self.empty_file(&st, &as_name.join(".wh..wh..opq"))?;
                }
                self.add_dir_contents(sub, as_name, false)?;
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                        let mut h = Self::header(&st, tar::EntryType::Link);
                        let first = first.clone();
                        self.tar
                            .append_link(&mut h, as_name, first)
                            .map_err(ArchiveError::Io)?;
                        return Ok(());
                    }
                    self.links
                        .insert((st.st_dev, st.st_ino), as_name.to_path_buf());
                }
                let f = File::from(open_at(dir, name, OFlag::O_RDONLY, Mode::empty())?);
                let mut h = Self::header(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // A file that shrinks while it is read is padded, one that grows is cut, so
                // the archive stays well formed.
                let body = f
                    .take(st.st_size as u64)
                    .chain(io::repeat(0))
                    .take(st.st_size as u64);
                self.tar
                    .append_data(&mut h, as_name, body)
                    .map_err(ArchiveError::Io)?;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), name)?;
                let mut h = Self::header(&st, tar::EntryType::Symlink);
                self.tar
                    .append_link(&mut h, as_name, Path::new(&target))
                    .map_err(ArchiveError::Io)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                let kind = match fmt {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(&st, kind);
                if fmt != libc::S_IFIFO {
                    let _ = h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32);
                    let _ = h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32);
                }
                self.tar
                    .append_data(&mut h, as_name, io::empty())
                    .map_err(ArchiveError::Io)?;
            }
            // Sockets are not archived, as in Docker.
            _ => {}
        }
        Ok(())
    }

    fn add_dir_contents(&mut self, dir: OwnedFd, as_name: &Path, with_self: bool) -> Result<()> {
        if with_self && !as_name.as_os_str().is_empty() {
            let st = fstat(dir.as_fd())?;
            let mut h = Self::header(&st, tar::EntryType::Directory);
            self.tar
                .append_data(&mut h, dir_name(as_name), io::empty())
                .map_err(ArchiveError::Io)?;
        }
        for n in dir_names(&dir)? {
            let child = as_name.join(&n);
            match self.add(dir.as_fd(), &n, &child) {
                // Gone while the copy ran.
                Err(ArchiveError::NotFound) => {}
                other => other?,
            }
        }
        Ok(())
    }
}

/// Whether an open directory is an overlay opaque directory (`trusted.overlay.opaque=y`).
fn is_opaque(dir: &OwnedFd) -> bool {
    let mut buf = [0u8; 4];
    let name = c"trusted.overlay.opaque";
    // SAFETY: a valid descriptor, a NUL-terminated name and a buffer of the given length.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

/// The paths (relative to the root) the runtime makes as mount points of a container
/// (dockerd keeps them in its "-init" layer): left out of diff and commit while empty.
pub fn init_paths() -> Vec<PathBuf> {
    [
        "dev",
        "dev/pts",
        "dev/shm",
        "dev/mqueue",
        "dev/console",
        "proc",
        "sys",
        "sys/fs/cgroup",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "etc/mtab",
        ".dockerenv",
        "sbin/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// An empty regular file or an empty directory (what a mount point is before its mount).
fn is_empty_mount_point(dir: BorrowedFd<'_>, name: &OsStr, st: &FileStat) -> bool {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => st.st_size == 0,
        libc::S_IFDIR => open_dir_at(dir, name)
            .and_then(|fd| dir_names(&fd))
            .is_ok_and(|n| n.is_empty()),
        _ => false,
    }
}

/// A directory's name in a tar (with its trailing slash, as Docker writes it).
fn dir_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    if !s.as_bytes().ends_with(b"/") {
        s.push("/");
    }
    PathBuf::from(s)
}

trait PeekBuf {
    fn fill_buf_peek(&mut self) -> io::Result<&[u8]>;
}

impl<R: Read> PeekBuf for io::BufReader<R> {
    fn fill_buf_peek(&mut self) -> io::Result<&[u8]> {
        io::BufRead::fill_buf(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(r.join("etc/sub/f"), "f").unwrap();
        std::os::unix::fs::symlink("/", r.join("toroot")).unwrap();
        std::os::unix::fs::symlink("../..", r.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("pw")).unwrap();
        d
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tree();
        let root = Root::open(d.path()).unwrap();
        // `/toroot/etc/passwd` is the root's own file, never the host's.
        let mut out = Vec::new();
        root.tar_to("/toroot/etc/passwd", &mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "root:x:0:0::/root:/bin/sh\n");
        let mut out = Vec::new();
        root.tar_to("/etc/up/etc/up/etc/sub", &mut out).unwrap();
        assert_eq!(names(&out), vec!["sub/", "sub/f"]);
        let st = root.stat("/pw").unwrap();
        assert_eq!(st.link_target, "/etc/passwd");
        assert!(matches!(root.stat("/nope"), Err(ArchiveError::NotFound)));
        let mut out = Vec::new();
        root.tar_to("/etc/.", &mut out).unwrap();
        assert!(
            names(&out).contains(&"sub/f".to_string()),
            "{:?}",
            names(&out)
        );
    }

    #[test]
    fn extraction_stays_inside_the_root() {
        let d = tree();
        let root = Root::open(d.path()).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        b.append_data(&mut h, "new/file", &b"abc"[..]).unwrap();
        let data = b.into_inner().unwrap();
        // Through a link to `/`: lands in the root's /etc.
        root.extract("/toroot/etc", &data[..], false, false)
            .unwrap();
        assert_eq!(
            std::fs::read(d.path().join("etc/new/file")).unwrap(),
            b"abc"
        );
        // Through `../..`: stays in the root.
        root.extract("/etc/up/etc/up", &data[..], false, false)
            .unwrap();
        assert_eq!(std::fs::read(d.path().join("new/file")).unwrap(), b"abc");
        // An entry that climbs out is refused.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_path("x").unwrap();
        let mut raw = h.as_bytes().to_vec();
        raw[..7].copy_from_slice(b"../../x");
        let mut h2 = tar::Header::from_byte_slice(&raw).clone();
        h2.set_cksum();
        b.append(&h2, &b"z"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(matches!(
            root.extract("/etc", &data[..], false, false),
            Err(ArchiveError::Invalid(_))
        ));
        // Not a directory.
        assert!(matches!(
            root.extract("/etc/passwd", &[][..], false, false),
            Err(ArchiveError::Invalid(_))
        ));
        // noOverwriteDirNonDir: a file where a directory is, refused; allowed without it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "sub", &b"f"[..]).unwrap();
        let data = b.into_inner().unwrap();
        assert!(matches!(
            root.extract("/etc", &data[..], false, true),
            Err(ArchiveError::Invalid(m)) if m.starts_with("cannot overwrite directory")
        ));
        assert!(d.path().join("etc/sub").is_dir());
        root.extract("/etc", &data[..], false, false).unwrap();
        assert_eq!(std::fs::read(d.path().join("etc/sub")).unwrap(), b"f");
    }
}
