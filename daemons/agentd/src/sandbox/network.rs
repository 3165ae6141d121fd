//! A network namespace of the agent's own: only loopback, and on it the
//! one listener the node's egress proxy serves. An agent inside reaches
//! nothing else, not even the host's loopback services.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd};

/// Creates a network namespace with loopback up and a TCP listener on
/// `127.0.0.1:port` inside it (port 0 picks one; see `local_addr`). Returns
/// the namespace (for [`SandboxPlan::network`](super::SandboxPlan)) and the
/// listener, already nonblocking for `tokio::net::TcpListener::from_std`.
///
/// Runs on a throwaway thread: unshare(CLONE_NEWNET) moves the calling
/// thread for good, so it must not be a tokio worker or any thread that
/// does other work; the thread ends right after.
pub fn isolated_network(port: u16) -> io::Result<(OwnedFd, TcpListener)> {
    std::thread::Builder::new()
        .name("agentd-netns".into())
        .spawn(move || in_new_namespace(port))?
        .join()
        .map_err(|_| io::Error::other("network namespace thread panicked"))?
}

fn in_new_namespace(port: u16) -> io::Result<(OwnedFd, TcpListener)> {
    // SAFETY: a flag-only syscall; it affects this thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    loopback_up()?;
    // A socket belongs to the namespace it was created in, whatever
    // thread later uses it.
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    listener.set_nonblocking(true)?;
    // SAFETY: a NUL-terminated path; the descriptor is owned below.
    let fd = unsafe {
        libc::open(
            c"/proc/thread-self/ns/net".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let namespace = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((namespace, listener))
}

/// A new namespace's loopback starts down.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a socket only for the interface ioctls, closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is ours.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    use std::os::fd::AsRawFd;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: the ioctls read and write the ifreq we own.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
