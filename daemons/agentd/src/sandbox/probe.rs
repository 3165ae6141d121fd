//! What this host can provide, layer by layer, for `osmoda status` and for
//! tests to skip what cannot run here.
//!
//! The namespace layers are tried for real on a throwaway thread (a thread
//! may enter namespaces of its own; they vanish when it ends), so the
//! answer is the kernel's, not a guess from version numbers; no process is
//! forked.

use std::fmt;
use std::io;

use super::sys;

/// One answer per layer: Ok (with a detail where there is one) or the
/// reason it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    /// Running agents under their own uid needs root, or CAP_SETUID and
    /// CAP_SETGID.
    pub uid_switch: Result<(), String>,
    /// A private mount namespace with tmpfs and detached bind mounts.
    pub mount_namespace: Result<(), String>,
    /// A /proc that hides other users' processes.
    pub hidepid_proc: Result<(), String>,
    pub network_namespace: Result<(), String>,
    pub seccomp: Result<(), String>,
    /// The kernel's Landlock ABI version.
    pub landlock: Result<u32, String>,
    /// Read-only mounts set per mount (mount_setattr, Linux 5.12).
    pub mount_setattr: Result<(), String>,
}

impl SandboxReport {
    /// Every layer is there (Landlock included).
    pub fn complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// Layers a confined agent needs; without them a plan fails to spawn.
    /// Landlock is not among them: it is applied when present.
    pub fn required_missing(&self) -> Vec<(&'static str, &str)> {
        self.layers()
            .into_iter()
            .filter(|(name, _)| *name != "landlock")
            .filter_map(|(name, result)| result.err().map(|reason| (name, reason)))
            .collect()
    }

    /// Every missing layer with its reason.
    pub fn missing(&self) -> Vec<(&'static str, &str)> {
        self.layers()
            .into_iter()
            .filter_map(|(name, result)| result.err().map(|reason| (name, reason)))
            .collect()
    }

    /// Each layer by name, Ok or the reason it is missing.
    pub fn layers(&self) -> [(&'static str, Result<(), &str>); 7] {
        [
            ("uid switch", unit(&self.uid_switch)),
            ("mount namespace", unit(&self.mount_namespace)),
            ("hidepid /proc", unit(&self.hidepid_proc)),
            ("network namespace", unit(&self.network_namespace)),
            ("seccomp", unit(&self.seccomp)),
            (
                "landlock",
                self.landlock.as_ref().map(drop).map_err(String::as_str),
            ),
            ("mount_setattr", unit(&self.mount_setattr)),
        ]
    }
}

impl fmt::Display for SandboxReport {
    /// One line per layer: `name: ok` or `name: missing (reason)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, result) in self.layers() {
            match (name, result) {
                ("landlock", Ok(())) => {
                    let abi = self.landlock.as_ref().copied().unwrap_or_default();
                    writeln!(f, "{name}: ok (ABI {abi})")?
                }
                (_, Ok(())) => writeln!(f, "{name}: ok")?,
                (_, Err(reason)) => writeln!(f, "{name}: missing ({reason})")?,
            }
        }
        Ok(())
    }
}

fn unit(result: &Result<(), String>) -> Result<(), &str> {
    result.as_ref().map(drop).map_err(String::as_str)
}

/// See the module docs. Takes a few milliseconds (a network namespace is
/// created and dropped).
pub fn probe() -> SandboxReport {
    let namespaces = std::thread::Builder::new()
        .name("agentd-probe".into())
        .spawn(probe_namespaces)
        .map_err(|e| format!("cannot start probe thread: {e}"))
        .and_then(|thread| {
            thread
                .join()
                .map_err(|_| "probe thread panicked".to_owned())
        });
    let (network_namespace, mount_namespace, hidepid_proc, mount_setattr) = match namespaces {
        Ok(results) => results,
        Err(reason) => (
            Err(reason.clone()),
            Err(reason.clone()),
            Err(reason.clone()),
            Err(reason),
        ),
    };
    SandboxReport {
        uid_switch: uid_switch(),
        mount_namespace,
        hidepid_proc,
        network_namespace,
        seccomp: seccomp(),
        landlock: sys::landlock_abi().map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => "not built into this kernel".to_owned(),
            Some(libc::EOPNOTSUPP) => "not enabled at boot (lsm=)".to_owned(),
            _ => e.to_string(),
        }),
        mount_setattr,
    }
}

type Layer = Result<(), String>;

fn reason(what: &str, error: io::Error) -> String {
    format!("{what}: {error}")
}

/// On the probe thread only: it leaves the host's namespaces for good.
fn probe_namespaces() -> (Layer, Layer, Layer, Layer) {
    // SAFETY: flag-only syscalls affecting this thread.
    let network = if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        Err(reason("unshare(CLONE_NEWNET)", io::Error::last_os_error()))
    } else {
        Ok(())
    };
    let mount = (|| {
        // SAFETY: as above.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
            return Err(reason("unshare(CLONE_NEWNS)", io::Error::last_os_error()));
        }
        sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| reason("making / private", e))?;
        let tree = sys::open_tree(c"/", sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC)
            .map_err(|e| reason("open_tree", e))?;
        sys::close(tree);
        sys::mount(
            c"tmpfs",
            c"/proc",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(c"size=4k"),
        )
        .map_err(|e| reason("tmpfs", e))
    })();
    if let Err(reason) = mount {
        let later = format!("needs the mount namespace ({reason})");
        return (network, Err(reason), Err(later.clone()), Err(later));
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let hidepid = sys::mount(
        c"proc",
        c"/proc",
        Some(c"proc"),
        flags,
        Some(c"hidepid=invisible"),
    )
    .or_else(|_| sys::mount(c"proc", c"/proc", Some(c"proc"), flags, Some(c"hidepid=2")))
    .map_err(|e| reason("mounting proc with hidepid", e));
    let setattr = sys::mount_setattr(c"/proc", 0, sys::MOUNT_ATTR_RDONLY, 0)
        .map_err(|e| reason("mount_setattr", e));
    (network, Ok(()), hidepid, setattr)
}

/// Root, or both capabilities in the effective set.
fn uid_switch() -> Layer {
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| "no CapEff in /proc/self/status".to_owned())?;
    let needed = (1u64 << CAP_SETGID) | (1u64 << CAP_SETUID);
    if effective & needed == needed {
        Ok(())
    } else {
        Err("needs root or CAP_SETUID and CAP_SETGID".to_owned())
    }
}

/// Whether the kernel takes filters that answer with an errno.
fn seccomp() -> Layer {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let action = SECCOMP_RET_ERRNO;
    // SAFETY: the kernel reads one u32.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    if result < 0 {
        Err(reason("seccomp filters", io::Error::last_os_error()))
    } else {
        Ok(())
    }
}
