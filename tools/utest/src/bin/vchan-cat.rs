//! A vchan end for the scenarios, like Mirage's `xencat`: as `server` it
//! offers a vchan to the peer domain, as `client` it connects to the
//! peer's (both at `/local/domain/<server>/data/vchan/<client>/<port>`,
//! Qubes' convention), then streams: a seeded pseudo-random payload of N
//! bytes out while it takes N bytes in (`duplex`), the payload out only
//! (`send`), N bytes in only (`recv`), or what comes in back out
//! (`echo`); or, with no peer, the payload through a loopback vchan in
//! this process (`local`: the benchmark's in-domain copy). It prints the CRC-32 (as dom0's busybox `crc32` prints it)
//! and length of what it sent and of what it received, the time,
//! the throughput and the event-channel kicks it sent per MiB.
//!
//! Argument bits: 0-15 the peer's domain, 16-31 the port of the path,
//! 32-54 N in KiB, 55 the client role, 56-58 the mode (0 duplex, 1 echo,
//! 2 send, 3 recv, 4 local), 59: the peer's close before N bytes is the
//! expected end, 60-63 the ring order c (0: libxenvchan's in-page
//! default, else both rings 2^(c + 9) bytes).
#![no_std]
#![no_main]

use gnttab::xs::{Fmt, Xs};
use urt::println;
use vchan::{Error, Vchan, Xen};

urt::entry!(main);

/// How long a client waits for the server's keys.
const CONNECT_TIMEOUT_NS: u64 = 60_000_000_000;
/// The payload's seed (the client's is its complement).
const SEED: u64 = 0x5eed_cafe_f00d_0001;

/// The stream's direction(s).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Duplex,
    Echo,
    Send,
    Recv,
}

fn main(arg: u64) -> i32 {
    match run(arg) {
        Ok(()) => 0,
        Err(e) => {
            println!("vchan-cat: FAIL {e}");
            1
        }
    }
}

/// CRC-32 (zlib's, as dom0's busybox `crc32` prints it) and the length.
struct Crc32 {
    crc: u32,
    len: u64,
}

/// The CRC's table (reflected polynomial 0xedb88320).
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

impl Crc32 {
    fn new() -> Self {
        Self { crc: !0, len: 0 }
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.crc = (self.crc >> 8) ^ CRC_TABLE[((self.crc as u8) ^ b) as usize];
        }
        self.len += data.len() as u64;
    }

    fn value(&self) -> u32 {
        !self.crc
    }
}

/// The payload: xorshift64* bytes from a seed.
struct Payload {
    x: u64,
    buf: [u8; 4096],
    at: usize,
}

impl Payload {
    fn new(seed: u64) -> Self {
        let mut p = Self {
            x: seed,
            buf: [0; 4096],
            at: 0,
        };
        p.refill();
        p
    }

    fn refill(&mut self) {
        for w in self.buf.chunks_mut(8) {
            self.x ^= self.x >> 12;
            self.x ^= self.x << 25;
            self.x ^= self.x >> 27;
            w.copy_from_slice(&self.x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_ne_bytes());
        }
        self.at = 0;
    }

    /// The next bytes, at most `max`, not yet taken.
    fn next(&mut self, max: usize) -> &[u8] {
        if self.at == self.buf.len() {
            self.refill();
        }
        let end = (self.at + max).min(self.buf.len());
        &self.buf[self.at..end]
    }

    fn take(&mut self, n: usize) {
        self.at += n;
    }
}

fn run(arg: u64) -> Result<(), Error> {
    let peer = arg as u16;
    let port = (arg >> 16) as u16;
    let total = ((arg >> 32) & 0x7f_ffff) << 10;
    let client = arg >> 55 & 1 == 1;
    let until_closed = arg >> 59 & 1 == 1;
    let ring = match arg >> 60 {
        0 => 0,
        c => 1usize << (c + 9),
    };
    let mode = match arg >> 56 & 7 {
        0 => Mode::Duplex,
        1 => Mode::Echo,
        2 => Mode::Send,
        3 => Mode::Recv,
        4 => return local(total, ring),
        _ => return Err(Error::Sys("mode", urt::errno::EINVAL)),
    };
    let mut xs = Xs::open().map_err(|e| Error::Store("open", e))?;
    let me = xs
        .read_u64("domid")
        .map_err(|e| Error::Store("read domid", e))? as u16;
    drop(xs);
    let (server, cli) = if client { (peer, me) } else { (me, peer) };
    let mut path = Fmt::new();
    path.push(b"/local/domain/")
        .num(u64::from(server))
        .push(b"/data/vchan/")
        .num(u64::from(cli))
        .push(b"/")
        .num(u64::from(port));
    let mut v = if client {
        connect(peer, path.as_str())?
    } else {
        vchan::server(peer, path.as_str(), ring, ring)?
    };
    let (rx, tx) = v.ring_sizes();
    println!(
        "vchan-cat: {} of domain {peer} at {}, rings {rx} in / {tx} out, {total} bytes",
        if client { "client" } else { "server" },
        path.as_str()
    );
    let seed = if client { !SEED } else { SEED };
    let t0 = urt::clock_ns();
    let r = stream(&mut v, mode, total, seed);
    let ns = urt::clock_ns().saturating_sub(t0).max(1);
    let (sent, got, closed) = r?;
    report(&sent, &got, ns, v.kicks());
    if closed {
        if !until_closed {
            return Err(Error::Closed);
        }
        println!("vchan-cat: the peer closed; closing");
    } else if until_closed {
        println!("vchan-cat: FAIL the peer did not close");
        return Err(Error::Protocol);
    }
    Ok(())
}

/// The payload through a loopback vchan in this process.
fn local(total: u64, ring: usize) -> Result<(), Error> {
    let order = ring.max(1).trailing_zeros() as u16;
    let mut l = vchan::local::loopback(order)?;
    let (rx, tx) = l.server.ring_sizes();
    println!("vchan-cat: loopback, rings {rx} in / {tx} out, {total} bytes");
    let (mut sent, mut got) = (Crc32::new(), Crc32::new());
    let mut payload = Payload::new(SEED);
    let mut buf = [0u8; 8192];
    l.server.set_blocking(false);
    l.client.set_blocking(false);
    let t0 = urt::clock_ns();
    while got.len < total {
        if sent.len < total {
            let chunk = payload.next((total - sent.len).min(4096) as usize);
            let n = l.server.write(chunk)?;
            sent.update(&chunk[..n]);
            payload.take(n);
        }
        let n = l.client.read(&mut buf)?;
        got.update(&buf[..n]);
    }
    let ns = urt::clock_ns().saturating_sub(t0).max(1);
    report(&sent, &got, ns, 0);
    if sent.value() != got.value() {
        return Err(Error::Protocol);
    }
    Ok(())
}

/// Prints the result line: checksums, time, MiB/s, kicks per MiB.
fn report(sent: &Crc32, got: &Crc32, ns: u64, kicks: u64) {
    let bytes = sent.len.max(got.len);
    let kib_s = bytes * 1_000_000_000 / 1024 / ns;
    println!(
        "vchan-cat: sent crc32 {:08x} {} bytes; received crc32 {:08x} {} bytes; {} ms, {}.{:03} MiB/s, {kicks} kicks ({} per MiB)",
        sent.value(),
        sent.len,
        got.value(),
        got.len,
        ns / 1_000_000,
        kib_s / 1024,
        (kib_s % 1024) * 1000 / 1024,
        kicks * (1 << 20) / bytes.max(1),
    );
}

/// Connects as the client, waiting for the server to publish its keys
/// (as `vchan-socket-proxy -m client` waits with a watch); until then
/// xenstore answers `ENOENT`, or `EACCES` where the nearest existing
/// directory is not ours to read.
fn connect(peer: u16, path: &str) -> Result<Vchan<Xen>, Error> {
    let deadline = urt::clock_ns() + CONNECT_TIMEOUT_NS;
    loop {
        match vchan::client(peer, path) {
            Err(Error::Store(..)) if urt::clock_ns() < deadline => {
                let _ = urt::sleep(100_000_000);
            }
            r => return r,
        }
    }
}

/// Streams as `mode` says; returns the checksums of what went out and
/// in, and whether the peer closed before the end.
fn stream(
    v: &mut Vchan<Xen>,
    mode: Mode,
    total: u64,
    seed: u64,
) -> Result<(Crc32, Crc32, bool), Error> {
    let (mut sent, mut got) = (Crc32::new(), Crc32::new());
    let mut payload = Payload::new(seed);
    let send_total = if matches!(mode, Mode::Duplex | Mode::Send) {
        total
    } else {
        0
    };
    let recv_total = if mode == Mode::Send { 0 } else { total };
    let mut buf = [0u8; 8192];
    v.set_blocking(false);
    while sent.len < send_total || got.len < recv_total {
        let mut moved = false;
        if sent.len < send_total {
            let max = (send_total - sent.len).min(4096) as usize;
            let chunk = payload.next(max);
            match v.write(chunk) {
                Ok(n) => {
                    sent.update(&chunk[..n]);
                    payload.take(n);
                    moved |= n > 0;
                }
                Err(Error::Closed) => return Ok((sent, got, true)),
                Err(e) => return Err(e),
            }
        }
        if got.len < recv_total {
            let max = ((recv_total - got.len) as usize).min(buf.len());
            match v.read(&mut buf[..max]) {
                Ok(n) => {
                    got.update(&buf[..n]);
                    moved |= n > 0;
                    if mode == Mode::Echo && n > 0 {
                        v.set_blocking(true);
                        let w = v.write(&buf[..n]);
                        v.set_blocking(false);
                        match w {
                            Ok(_) => sent.update(&buf[..n]),
                            Err(Error::Closed) => return Ok((sent, got, true)),
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(Error::Closed) => return Ok((sent, got, true)),
                Err(e) => return Err(e),
            }
        }
        if !moved {
            // Both asked for their kick (data_ready / buffer_space, as
            // the failed read and write did): sleep until one comes.
            v.wait()?;
        }
    }
    match v.flush() {
        Ok(()) => Ok((sent, got, false)),
        Err(Error::Closed) => Ok((sent, got, true)),
        Err(e) => Err(e),
    }
}
