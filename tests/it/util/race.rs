//! Races that really happen: processes started together from threads behind a [`Barrier`], and
//! gates that hold each racer at the one read it makes between reading the alias log and
//! writing its move, until every racer got there. A promotion reads the log, then fetches the
//! version it moves the alias to (to verify it), then appends its move; holding that fetch
//! means every racer has read the same state before any of them writes.
//!
//! * [`FifoGate`]: for a file store, the artifacts are swapped for named pipes (`mkfifo`): a
//!   racer blocks in its read until the test writes the bytes.
//! * [`HoldingProxy`]: for S3, a TCP proxy in front of the server that lets requests through
//!   but holds the ones `hold` picks (the artifact GETs) until released.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Run, TestCommand};

/// `O_NONBLOCK` of Linux (x86_64 and aarch64): opening a pipe's write end with it fails at once
/// (ENXIO) while no reader has the pipe open.
const O_NONBLOCK: i32 = 0o4000;

/// A place where racers are held until the test lets them go.
pub trait Gate {
    /// Whether all `racers` are held there now.
    fn all_held(&mut self, racers: usize) -> bool;
    /// Let every held racer go, and every later one through.
    fn release(&mut self);
}

/// Run `commands` at the same moment, each from its own thread, all released by one barrier;
/// once every one of them is held at `gate` (or one exited before it got there, or `timeout`
/// passed) release the gate. Their runs, in order, and whether all were held together.
pub fn race(commands: Vec<TestCommand>, gate: &mut dyn Gate, timeout: Duration) -> (Vec<Run>, bool) {
    let n = commands.len();
    let barrier = Arc::new(Barrier::new(n));
    let finished = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = commands
        .into_iter()
        .map(|mut c| {
            let (barrier, finished) = (barrier.clone(), finished.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let run = c.output();
                finished.fetch_add(1, Ordering::SeqCst);
                run
            })
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let all_held = loop {
        if gate.all_held(n) {
            break true;
        }
        if finished.load(Ordering::SeqCst) > 0 || Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    gate.release();
    (threads.into_iter().map(|t| t.join().unwrap()).collect(), all_held)
}

/// Artifacts of a file store swapped for named pipes: whoever reads one blocks until the gate is
/// released, then reads the original bytes. Releasing (or dropping) it puts the files back.
pub struct FifoGate {
    pipes: Vec<Pipe>,
}

struct Pipe {
    path: PathBuf,
    bytes: Vec<u8>,
    perms: std::fs::Permissions,
    /// The write end, opened once a reader is waiting.
    writer: Option<std::fs::File>,
}

impl FifoGate {
    /// Swap each of `files` for a named pipe.
    pub fn new(files: &[PathBuf]) -> FifoGate {
        let pipes = files
            .iter()
            .map(|path| {
                let bytes = std::fs::read(path).unwrap();
                let perms = std::fs::metadata(path).unwrap().permissions();
                std::fs::remove_file(path).unwrap();
                let st = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo (coreutils)");
                assert!(st.success(), "mkfifo {}", path.display());
                Pipe { path: path.clone(), bytes, perms, writer: None }
            })
            .collect();
        FifoGate { pipes }
    }
}

impl Gate for FifoGate {
    /// Whether every pipe has a reader blocked on it (one pipe per racer).
    fn all_held(&mut self, racers: usize) -> bool {
        assert_eq!(self.pipes.len(), racers, "one artifact per racer");
        for p in self.pipes.iter_mut().filter(|p| p.writer.is_none()) {
            p.writer = std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&p.path).ok();
        }
        self.pipes.iter().all(|p| p.writer.is_some())
    }

    /// Give every waiting reader its bytes, and put regular files back for anyone later.
    fn release(&mut self) {
        for p in &mut self.pipes {
            if let Some(nonblocking) = p.writer.take() {
                // a reader is there: a blocking write end opens at once, and the reader sees
                // end of file when it is closed
                let mut w = std::fs::OpenOptions::new().write(true).open(&p.path).unwrap();
                drop(nonblocking);
                // the file goes back before the bytes: a reader that opens the path again once
                // it has them (promote reads an artifact twice) finds the file, not this pipe
                restore(&p.path, &p.bytes, &p.perms);
                w.write_all(&p.bytes).unwrap();
            } else {
                // A reader may have opened the pipe since the last look, and would wait on it
                // forever once the file is back: a read-write end (which Linux never blocks on)
                // lets its open return, the file goes back, then the bytes follow (a few KB: the
                // pipe buffer holds them when nobody reads) and closing gives it end of file.
                let mut rw = std::fs::OpenOptions::new().read(true).write(true).open(&p.path).unwrap();
                restore(&p.path, &p.bytes, &p.perms);
                rw.write_all(&p.bytes).unwrap();
            }
        }
        self.pipes.clear();
    }
}

impl Drop for FifoGate {
    fn drop(&mut self) {
        self.release();
    }
}

/// Put `bytes` back at `path` (a pipe now) as a regular file with `perms`, atomically.
fn restore(path: &Path, bytes: &[u8], perms: &std::fs::Permissions) {
    let tmp = path.with_extension("restore");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, perms.clone()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TCP proxy to `upstream` that holds the requests `hold` picks (by the first bytes a client
/// sends for them) until it is released ([`Gate::release`], or dropped); everything else
/// passes at once.
pub struct HoldingProxy {
    /// `http://127.0.0.1:PORT`, to use as the endpoint.
    pub url: String,
    gate: Arc<(Mutex<Held>, Condvar)>,
    stop: Arc<AtomicBool>,
    addr: String,
}

#[derive(Default)]
struct Held {
    held: usize,
    released: bool,
}

impl HoldingProxy {
    /// Proxy to `upstream` (`http://HOST:PORT`), holding the reads for which `hold` is true.
    pub fn start(upstream: &str, hold: fn(&[u8]) -> bool) -> HoldingProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gate: Arc<(Mutex<Held>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (gate.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(s2, c2));
                let g = g.clone();
                std::thread::spawn(move || forward(client, server, &g, hold));
            }
        });
        HoldingProxy { url: format!("http://{addr}"), gate, stop, addr }
    }

    fn open_gate(&self) {
        let (m, cv) = &*self.gate;
        m.lock().unwrap().released = true;
        cv.notify_all();
    }
}

impl Gate for HoldingProxy {
    /// Whether a request of every racer is held (one picked request each).
    fn all_held(&mut self, racers: usize) -> bool {
        self.gate.0.lock().unwrap().held >= racers
    }

    fn release(&mut self) {
        self.open_gate();
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        self.open_gate();
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Client → server, holding a read that `hold` picks until the gate is released.
fn forward(mut client: TcpStream, mut server: TcpStream, gate: &(Mutex<Held>, Condvar), hold: fn(&[u8]) -> bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hold(&buf[..n]) {
            let (m, cv) = gate;
            let mut g = m.lock().unwrap();
            if !g.released {
                g.held += 1;
                cv.notify_all();
                drop(cv.wait_while(g, |g| !g.released).unwrap());
            }
        }
        if server.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = server.shutdown(Shutdown::Write);
}

/// Server → client, as is.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// An S3 GetObject of a `.json` object (an artifact), by its request line.
pub fn is_artifact_get(first_bytes: &[u8]) -> bool {
    let line = first_bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    line.starts_with(b"GET ") && line.windows(5).any(|w| w == b".json")
}
