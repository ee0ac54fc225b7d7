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
//!
//! And [`own_file_table`] / [`leave_file_table`]: a worker's descriptor
//! table its own, for the kernel's cheaper path in those same calls.

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

/// Gives the calling thread a file-descriptor table of its own: a copy of
/// the one it shared with the process's other threads (unshare(2),
/// `CLONE_FILES`). A socket system call in a thread whose table is shared
/// takes and drops a reference on the socket's file (the kernel's
/// `fdget`/`fput`, ~0.25 µs a request on this VM, docs/benchmarks.md,
/// session 21); in a thread alone with its table it does not, as in
/// nginx's single-threaded worker. The threads left with the old table keep
/// their copies of whatever was open then, which stay open as long as they
/// do: the worker calls this before it opens a socket (`cli::serve`), and
/// a thread that leaves a worker's table behind calls [`leave_file_table`].
/// Descriptors opened afterwards by one side are not seen by the other.
/// Elsewhere than Linux, nothing. Returns whether it took place.
pub fn own_file_table() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: unshare(2) with CLONE_FILES copies this thread's table;
        // it touches no memory of this process.
        unsafe { libc::unshare(libc::CLONE_FILES) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// For a thread that needs no descriptor but stdin, stdout and stderr
/// (the access-log writer): a table of its own ([`own_file_table`]) with
/// its copies of every other descriptor closed, so that it holds nothing
/// open behind another thread's back and the thread it was started from
/// is left alone with its table. It blocks every signal first: a signal
/// sent to the process goes to any thread not blocking it, and tokio's
/// handler writes to a descriptor (its signal pipe) this thread would no
/// longer have, so a SIGTERM taken here would be lost. Returns whether it
/// took place.
pub fn leave_file_table() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sigfillset and pthread_sigmask write the set given and
        // this thread's signal mask only.
        let blocked = unsafe {
            let mut all = std::mem::zeroed::<libc::sigset_t>();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut()) == 0
        };
        if !blocked || !own_file_table() {
            return false;
        }
        close_from(3);
        true
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Closes the calling thread's descriptors from `first` up: with
/// close_range(2), else (a kernel before 5.9) one by one up to the
/// descriptor limit.
#[cfg(target_os = "linux")]
fn close_from(first: u32) {
    // SAFETY: closes descriptors of this thread's own table (after
    // `unshare`): no other thread's descriptors, and no Rust value here
    // owns one of these copies.
    let ranged = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            libc::c_long::from(first),
            libc::c_long::from(u32::MAX),
            0 as libc::c_long,
        )
    };
    if ranged == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let last = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20)
    } else {
        1 << 16
    };
    for fd in u64::from(first)..last {
        // SAFETY: as above; a descriptor not open is EBADF, nothing else.
        unsafe { libc::close(fd as libc::c_int) };
    }
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
