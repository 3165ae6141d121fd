//! Raw syscalls and kernel constants the sandbox needs that libc does not
//! export (or not on every libc version we build with). Every function
//! here is a single syscall, safe to call between fork and exec: no
//! allocation, no locks; errors come back as the errno.

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

// <linux/mount.h>; the numbers are the kernel ABI, fixed since 5.2/5.12.
pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 0x1;
pub(crate) const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
pub(crate) const AT_RECURSIVE: libc::c_uint = 0x8000;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;

// <linux/landlock.h>
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `struct sock_fprog` for seccomp(2).
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const seccompiler::sock_filter,
}

fn check(result: libc::c_long) -> io::Result<libc::c_long> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn check_int(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn open_tree(path: &CStr, flags: libc::c_uint) -> io::Result<RawFd> {
    // SAFETY: a NUL-terminated path and plain flags.
    let fd =
        check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })?;
    Ok(fd as RawFd)
}

/// Attaches the detached tree `fd` at `to`.
pub(crate) fn move_mount_fd(fd: RawFd, to: &CStr) -> io::Result<()> {
    // SAFETY: an empty string for the source path with F_EMPTY_PATH, and a
    // NUL-terminated destination.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub(crate) fn mount_setattr(
    path: &CStr,
    flags: libc::c_uint,
    set: u64,
    clear: u64,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the kernel reads `attr` (its size is passed) and the path.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

pub(crate) fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: NUL-terminated strings or null pointers, as mount(2) allows.
    check_int(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
}

/// `mkdir`, where an existing entry is fine.
pub(crate) fn mkdir_exists_ok(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EEXIST) {
            return Err(error);
        }
    }
    Ok(())
}

/// Creates an empty file as a mount point for a kept file.
pub(crate) fn touch(path: &CStr) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is closed right away.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o444,
        )
    };
    check_int(fd)?;
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Writes a whole new file, `mode`, owned by `uid:gid`.
pub(crate) fn write_new_file(
    path: &CStr,
    content: &[u8],
    mode: libc::mode_t,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is closed on every path
    // below.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    };
    check_int(fd)?;
    let result = (|| {
        let mut rest = content;
        while !rest.is_empty() {
            // SAFETY: `rest` is a live slice of `rest.len()` bytes.
            let written = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if written < 0 {
                let error = io::Error::last_os_error();
                if error.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(error);
            }
            rest = &rest[written as usize..];
        }
        // SAFETY: plain syscalls on our descriptor.
        check_int(unsafe { libc::fchown(fd, uid, gid) })?;
        // The umask may have cut the mode at creation.
        check_int(unsafe { libc::fchmod(fd, mode) })
    })();
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    result
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd`.
    unsafe { libc::close(fd) };
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_uint = 1;

/// Adds to `ruleset` a rule allowing `access` beneath the directory `dir`.
pub(crate) fn landlock_add_path_rule(ruleset: RawFd, dir: &CStr, access: u64) -> io::Result<()> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            dir.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check_int(fd)?;
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: fd,
    };
    // SAFETY: the kernel reads the attribute we own.
    let result = check(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0,
        )
    });
    close(fd);
    result.map(drop)
}

/// landlock_restrict_self(2) with a ruleset descriptor.
pub(crate) fn landlock_restrict_self(ruleset: RawFd) -> io::Result<()> {
    // SAFETY: a descriptor and zero flags.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) }).map(drop)
}

/// The Landlock ABI version the kernel offers.
pub(crate) fn landlock_abi() -> io::Result<u32> {
    // SAFETY: the version query takes no attribute.
    let version = check(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    })?;
    Ok(version as u32)
}

/// Installs one seccomp BPF program on the calling thread (no_new_privs
/// must be set).
pub(crate) fn seccomp_install(program: &[seccompiler::sock_filter]) -> io::Result<()> {
    let len = libc::c_ushort::try_from(program.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let fprog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    // SAFETY: the kernel copies the program; `fprog` and `program` outlive
    // the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const SockFprog,
        )
    })
    .map(drop)
}
