//! A TCP proxy on 127.0.0.1 that cuts every connection once it has passed a given number of
//! bytes from the server to the client: a transfer that breaks halfway, for real, between hyperd
//! and a real registry. [`CuttingProxy::heal`] lets later connections through whole.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct CuttingProxy {
    port: u16,
    healed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Connections cut so far.
    cuts: Arc<AtomicUsize>,
}

impl CuttingProxy {
    /// Forwards 127.0.0.1:<new port> to `upstream` (`host:port`), cutting each connection after
    /// `cut_after` bytes from upstream.
    pub fn start(upstream: &str, cut_after: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let healed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let (h, s, c) = (healed.clone(), stop.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let limit = if h.load(Ordering::SeqCst) {
                    usize::MAX
                } else {
                    cut_after
                };
                let c = c.clone();
                std::thread::spawn(move || relay(client, server, limit, &c));
            }
        });
        Self {
            port,
            healed,
            stop,
            cuts,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// New connections pass whole from now on.
    pub fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
    }

    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(client: TcpStream, server: TcpStream, limit: usize, cuts: &AtomicUsize) {
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut passed = 0usize;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = n.min(limit - passed);
        if c_write.write_all(&buf[..n]).is_err() {
            break;
        }
        passed += n;
        if passed >= limit {
            cuts.fetch_add(1, Ordering::SeqCst);
            break;
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
}
