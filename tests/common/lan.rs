//! The guest's LAN made by `scripts/two-hosts.sh`: real clients (redis-cli,
//! nc, and this test's own TCP connections) in the client namespace talk to
//! `kvstore` in a host namespace.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

/// The guest's address on the LAN, and its Redis port.
pub const GUEST: &str = "10.0.0.2";
pub const REDIS: &str = "10.0.0.2:6379";

/// The options that give `kvstore` its disk and network on a host.
pub fn kvstore(disk: &Path) -> Vec<String> {
    [
        "--kernel",
        "kvstore",
        "--disk",
        disk.to_str().unwrap(),
        "--net",
        "tap=ftvm0",
        "--cmdline",
        "ip=10.0.0.2/24",
    ]
    .map(String::from)
    .to_vec()
}

/// A zeroed disk image of 4 MiB for kvstore's log.
pub fn fresh_disk(dir: &Path) -> std::path::PathBuf {
    disk_of(dir, 4 << 20)
}

/// A zeroed disk image of `bytes` (a whole number of sectors).
pub fn disk_of(dir: &Path, bytes: usize) -> std::path::PathBuf {
    let path = dir.join("kv.img");
    std::fs::write(&path, vec![0u8; bytes]).unwrap();
    path
}

/// The value of `key{i}` on a [`prefilled_disk`]: `value{i}` padded with
/// dots to 64 bytes.
pub fn prefilled_value(i: u64) -> String {
    format!("{:.<64}", format!("value{i}"))
}

/// A disk image whose kvstore log already holds `keys` keys, `key{i}` set
/// to [`prefilled_value`]`(i)`, written by kvstore's own journal.
pub fn prefilled_disk(dir: &Path, keys: u64) -> std::path::PathBuf {
    use kvcore::journal::Journal;
    let path = fresh_disk(dir);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut kv = kvcore::Kv::new();
    let mut journal = Journal::open(ImageFile(file), &mut kv, 0, &mut || true).unwrap();
    for i in 0..keys {
        let set = [
            b"SET".to_vec(),
            format!("key{i}").into_bytes(),
            prefilled_value(i).into_bytes(),
        ];
        journal.stage(&kvcore::log::encode_entry(&[&set]));
    }
    assert!(journal.commit(), "the prefilled log is written");
    path
}

/// A disk image file as kvstore's journal sees a block device.
struct ImageFile(std::fs::File);

impl kvcore::journal::Disk for ImageFile {
    fn capacity(&self) -> u64 {
        self.0.metadata().unwrap().len() / kvcore::log::SECTOR_SIZE as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), kvcore::journal::DiskError> {
        use std::os::unix::fs::FileExt;
        let at = sector * kvcore::log::SECTOR_SIZE as u64;
        self.0
            .read_exact_at(buf, at)
            .map_err(|_| kvcore::journal::DiskError("read"))
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), kvcore::journal::DiskError> {
        use std::os::unix::fs::FileExt;
        let at = sector * kvcore::log::SECTOR_SIZE as u64;
        self.0
            .write_all_at(data, at)
            .map_err(|_| kvcore::journal::DiskError("write"))
    }

    fn flush(&mut self) -> Result<(), kvcore::journal::DiskError> {
        self.0
            .sync_data()
            .map_err(|_| kvcore::journal::DiskError("flush"))
    }
}

/// Runs a client program in network namespace `namespace`.
pub fn client(namespace: &str, program: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, program])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the client");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `redis-cli -h GUEST ARGS` in `namespace`, its stdout.
pub fn redis_cli(namespace: &str, args: &[&str]) -> String {
    let mut all = vec!["-h", GUEST];
    all.extend_from_slice(args);
    let out = client(namespace, "redis-cli", &all, b"");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP connection to the guest made from inside `namespace`: the
/// socket belongs to the namespace of the thread that creates it.
pub fn connect_in(namespace: &str, address: &str) -> TcpStream {
    let netns = File::open(format!("/var/run/netns/{namespace}")).expect("the namespace exists");
    let address = address.to_owned();
    thread::spawn(move || {
        // SAFETY: moves only this short-lived thread into the namespace.
        let ret = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
        TcpStream::connect(address).expect("connect to the guest")
    })
    .join()
    .unwrap()
}

/// A RESP connection issuing inline commands and reading one-line replies.
pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    pub fn open(namespace: &str, timeout: Duration) -> Self {
        let stream = connect_in(namespace, REDIS);
        stream.set_read_timeout(Some(timeout)).unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends `command` and returns its reply's first line (a bulk reply's
    /// value is read too and returned after a newline).
    pub fn call(&mut self, command: &str) -> std::io::Result<String> {
        self.send(format!("{command}\r\n").as_bytes())?;
        self.reply()
    }

    /// Sends requests without waiting for their replies (a pipeline).
    pub fn send(&mut self, requests: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(requests)
    }

    /// The next reply's first line (a bulk reply's value after a newline,
    /// as [`Connection::call`] returns it).
    pub fn reply(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(len) = line
            .strip_prefix('$')
            .and_then(|l| l.trim_end().parse::<usize>().ok())
        {
            let mut value = vec![0u8; len + 2];
            self.reader.read_exact(&mut value)?;
            line.push_str(&String::from_utf8_lossy(&value[..len]));
        }
        Ok(line.trim_end().to_owned())
    }

    /// Reads back `key{i}` for every `i` below `count`: each must hold
    /// `value{i}`.
    pub fn assert_keys(&mut self, count: u64, context: &str) {
        for i in 0..count {
            let value = format!("value{i}");
            let reply = self.call(&format!("GET key{i}")).unwrap();
            assert_eq!(
                reply,
                format!("${}\r\n{value}", value.len()),
                "key{i}: {context}"
            );
        }
    }

    /// The connection's socket, for another thread to shut.
    pub fn stream(&self) -> TcpStream {
        self.writer.try_clone().unwrap()
    }

    pub fn close(self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// A RESP2 multibulk request.
pub fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Collects the RARP frames seen in `namespace` for `span`, on a thread
/// started now: (source MAC, frame) pairs.
pub fn capture_rarp(namespace: &str, span: Duration) -> thread::JoinHandle<Vec<[u8; 6]>> {
    let netns = File::open(format!("/var/run/netns/{namespace}")).expect("the namespace exists");
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let capture = thread::spawn(move || {
        // SAFETY: moves only this thread into the namespace; the socket is
        // checked, read into a buffer of its size, and closed once.
        unsafe {
            assert_eq!(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET), 0);
            let protocol = (0x8035u16).to_be() as i32;
            let socket = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, protocol);
            assert!(
                socket >= 0,
                "AF_PACKET: {}",
                std::io::Error::last_os_error()
            );
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            libc::setsockopt(
                socket,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            ready_tx.send(()).unwrap();
            let mut seen = Vec::new();
            let deadline = std::time::Instant::now() + span;
            let mut frame = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                let n = libc::recv(socket, frame.as_mut_ptr().cast(), frame.len(), 0);
                if n >= 12 {
                    seen.push(frame[6..12].try_into().unwrap());
                }
            }
            libc::close(socket);
            seen
        }
    });
    ready.recv().unwrap();
    capture
}

/// Asserts that `ftvm demo --net` removed its network namespace.
pub fn assert_no_demo_namespace() {
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("ftvmdemo"),
        "the demo left its namespace behind"
    );
}
