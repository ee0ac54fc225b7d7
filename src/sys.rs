//! `recv` and `send` on a socket as plain system calls, for the request
//! path's four a request (the client's request and answer, the upstream's).
//! glibc's wrappers for them are cancellation points: in a process with
//! more than one thread (figway has its access-log writer, the config
//! watcher, tokio's blocking pool) each call enables and disables
//! asynchronous cancellation around the system call, two atomic updates of
//! the thread's cancellation state, ~0.2 µs a request in all on this VM
//! (`benches/cpu_profile.sh`: `__pthread_disable_asynccancel`, `__send`,
//! `__libc_recv`). nginx, one thread, skips them. Nothing in figway uses
//! thread cancellation. Elsewhere than Linux these are tokio's calls. The
//! caller waits for readiness and clears it (`TcpStream::try_io`).

use std::io::{self, IoSlice};
#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Reads once from `socket` into `buf`'s spare capacity (the caller
/// reserved some): `Ok(0)` at the end of the stream.
pub fn recv(socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let spare = buf.spare_capacity_mut();
        // SAFETY: the pointer and length are those of `spare`, which the
        // kernel writes at most `len` bytes of; the address arguments are
        // null (no peer address wanted). Arguments go as `c_long`, as the
        // variadic `syscall` reads them.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                libc::c_long::from(socket.as_raw_fd()),
                spare.as_mut_ptr() as libc::c_long,
                spare.len() as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let n = n.min(spare.len());
        // SAFETY: the kernel wrote `n` bytes at the start of the spare
        // capacity.
        unsafe { buf.set_len(buf.len() + n) };
        Ok(n)
    }
    #[cfg(not(target_os = "linux"))]
    socket.try_read_buf(buf)
}

/// Writes some of `bufs` to `socket` once: a single buffer with `send`
/// (`MSG_NOSIGNAL`: a peer gone is an error, not a signal), more with
/// `writev` (Rust ignores `SIGPIPE` from the start).
pub fn send(socket: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let fd = libc::c_long::from(socket.as_raw_fd());
        // SAFETY: the kernel reads the given buffers only, within their
        // lengths (`IoSlice` is `iovec` on Unix); the address arguments of
        // `sendto` are null. Arguments go as `c_long`.
        let n = unsafe {
            match bufs {
                [one] => libc::syscall(
                    libc::SYS_sendto,
                    fd,
                    one.as_ptr() as libc::c_long,
                    one.len() as libc::c_long,
                    libc::c_long::from(libc::MSG_NOSIGNAL),
                    0 as libc::c_long,
                    0 as libc::c_long,
                ),
                _ => libc::syscall(
                    libc::SYS_writev,
                    fd,
                    bufs.as_ptr() as libc::c_long,
                    bufs.len().min(1024) as libc::c_long,
                ),
            }
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    socket.try_write_vectored(bufs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::Interest;

    #[tokio::test]
    async fn bytes_go_both_ways_and_errors_are_the_systems() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let a = TcpStream::connect(addr).await.unwrap();
        let (b, _) = listener.accept().await.unwrap();
        a.writable().await.unwrap();
        assert_eq!(send(&a, &[IoSlice::new(b"hello")]).unwrap(), 5);
        assert_eq!(
            send(&a, &[IoSlice::new(b", "), IoSlice::new(b"world")]).unwrap(),
            7
        );
        let mut buf = BytesMut::from(&b"<"[..]);
        buf.reserve(64);
        let mut got = 0;
        while got < 12 {
            b.readable().await.unwrap();
            match b.try_io(Interest::READABLE, || recv(&b, &mut buf)) {
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(&buf[..], b"<hello, world");
        // Nothing more yet: the system's `WouldBlock`.
        let e = recv(&b, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        b.readable().await.unwrap();
        assert_eq!(recv(&b, &mut buf).unwrap(), 0, "the end of the stream");
        // A peer gone: an error, not a signal.
        let e = loop {
            match send(&b, &[IoSlice::new(&[0; 65536])]) {
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
}
