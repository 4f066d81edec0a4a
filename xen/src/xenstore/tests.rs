//! The xenstore client against a fake xenstored on the same ring page,
//! which moves at most `chunk` bytes per step in each direction so that
//! messages arrive in pieces and cross the ring's end.

extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::format;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::*;

/// A node: value and permissions (encoded as on the wire).
#[derive(Clone, Default)]
struct Node {
    value: Vec<u8>,
    perms: Vec<String>,
}

struct Fake {
    req: ByteRing,
    rsp: ByteRing,
    chunk: usize,
    rx: Vec<u8>,
    tx: VecDeque<u8>,
    store: BTreeMap<String, Node>,
    watches: Vec<(String, String)>,
    /// Open transactions: their copy of the store and the generation at
    /// their start.
    txs: BTreeMap<u32, (BTreeMap<String, Node>, u64)>,
    generation: u64,
    next_tx: u32,
    /// Commits still to fail with EAGAIN.
    fail_commits: u32,
    notified: usize,
}

impl Fake {
    /// The server side of `page`, which starts its indices at `start` in
    /// both rings.
    fn new(page: *mut XenstoreDomainInterface, chunk: usize) -> Self {
        // SAFETY: the test's page outlives the fake; client and fake run in
        // turn on one thread, each touching only its own indices.
        let (req, rsp) = unsafe {
            (
                ByteRing::new(
                    addr_of_mut!((*page).req).cast(),
                    XENSTORE_RING_SIZE,
                    addr_of_mut!((*page).req_cons),
                    addr_of_mut!((*page).req_prod),
                ),
                ByteRing::new(
                    addr_of_mut!((*page).rsp).cast(),
                    XENSTORE_RING_SIZE,
                    addr_of_mut!((*page).rsp_cons),
                    addr_of_mut!((*page).rsp_prod),
                ),
            )
        };
        let mut store = BTreeMap::new();
        store.insert("/".to_string(), Node::default());
        Self {
            req,
            rsp,
            chunk,
            rx: Vec::new(),
            tx: VecDeque::new(),
            store,
            watches: Vec::new(),
            txs: BTreeMap::new(),
            generation: 0,
            next_tx: 1,
            fail_commits: 0,
            notified: 0,
        }
    }

    /// One step: read at most `chunk` request bytes, handle whole
    /// messages, write at most `chunk` reply bytes.
    fn step(&mut self) {
        let mut buf = vec![0u8; self.chunk];
        let n = self.req.consume(&mut buf);
        self.rx.extend_from_slice(&buf[..n]);
        while self.rx.len() >= XSD_SOCKMSG_SIZE {
            let h = header(&self.rx);
            let total = XSD_SOCKMSG_SIZE + h.len as usize;
            if self.rx.len() < total {
                break;
            }
            let body: Vec<u8> = self.rx.drain(..total).skip(XSD_SOCKMSG_SIZE).collect();
            self.handle(h, &body);
        }
        let out: Vec<u8> = self.tx.iter().take(self.chunk).copied().collect();
        let n = self.rsp.produce(&out);
        self.tx.drain(..n);
    }

    fn send(&mut self, ty: u32, req_id: u32, tx_id: u32, body: &[u8]) {
        for v in [ty, req_id, tx_id, body.len() as u32] {
            self.tx.extend(v.to_ne_bytes());
        }
        self.tx.extend(body);
    }

    fn fire(&mut self, path: &str) {
        let hits: Vec<(String, String)> = self
            .watches
            .iter()
            .filter(|(w, _)| path == w || path.starts_with(&format!("{w}/")))
            .cloned()
            .collect();
        for (_, token) in hits {
            let body = format!("{path}\0{token}\0");
            self.send(msg::WATCH_EVENT, 0, 0, body.as_bytes());
        }
    }

    fn handle(&mut self, h: XsdSockmsg, body: &[u8]) {
        let args: Vec<&[u8]> = body.splitn(2, |&b| b == 0).collect();
        let path = String::from_utf8_lossy(args[0]).into_owned();
        let rest = args.get(1).copied().unwrap_or_default();
        let reply = self.exec(h, &path, rest);
        match reply {
            Ok(body) => self.send(h.type_, h.req_id, h.tx_id, &body),
            Err(name) => {
                let body = format!("{name}\0");
                self.send(msg::ERROR, h.req_id, h.tx_id, body.as_bytes());
            }
        }
    }

    fn exec(&mut self, h: XsdSockmsg, path: &str, rest: &[u8]) -> Result<Vec<u8>, &'static str> {
        let tx = h.tx_id;
        if tx != 0 && !self.txs.contains_key(&tx) {
            return Err("ENOENT");
        }
        let mut changed = None;
        let res = {
            let store = if tx == 0 {
                &mut self.store
            } else {
                &mut self.txs.get_mut(&tx).expect("checked").0
            };
            match h.type_ {
                msg::READ => store.get(path).map(|n| n.value.clone()).ok_or("ENOENT"),
                msg::WRITE | msg::MKDIR => {
                    if h.type_ == msg::MKDIR && store.contains_key(path) {
                        return Ok(b"OK\0".to_vec());
                    }
                    let mut p = String::new();
                    for part in path.split('/').filter(|s| !s.is_empty()) {
                        p = format!("{p}/{part}");
                        store.entry(p.clone()).or_insert_with(|| Node {
                            value: Vec::new(),
                            perms: vec!["n0".to_string()],
                        });
                    }
                    if h.type_ == msg::WRITE {
                        store.get_mut(path).expect("made").value = rest.to_vec();
                    }
                    changed = Some(path.to_string());
                    Ok(b"OK\0".to_vec())
                }
                msg::RM => {
                    if !store.contains_key(path) {
                        return Err("ENOENT");
                    }
                    let prefix = format!("{path}/");
                    store.retain(|k, _| k != path && !k.starts_with(&prefix));
                    changed = Some(path.to_string());
                    Ok(b"OK\0".to_vec())
                }
                msg::DIRECTORY => {
                    if !store.contains_key(path) {
                        return Err("ENOENT");
                    }
                    let prefix = if path == "/" {
                        "/".to_string()
                    } else {
                        format!("{path}/")
                    };
                    let mut out = Vec::new();
                    for k in store.keys() {
                        if let Some(child) = k.strip_prefix(&prefix)
                            && !child.is_empty()
                            && !child.contains('/')
                        {
                            out.extend_from_slice(child.as_bytes());
                            out.push(0);
                        }
                    }
                    Ok(out)
                }
                msg::GET_PERMS => store
                    .get(path)
                    .map(|n| {
                        n.perms
                            .iter()
                            .flat_map(|p| format!("{p}\0").into_bytes())
                            .collect()
                    })
                    .ok_or("ENOENT"),
                msg::SET_PERMS => {
                    let node = store.get_mut(path).ok_or("ENOENT")?;
                    node.perms = strings(rest);
                    Ok(b"OK\0".to_vec())
                }
                msg::WATCH => {
                    let token = strings(rest).first().cloned().unwrap_or_default();
                    self.watches.push((path.to_string(), token.clone()));
                    // xenstored fires a new watch once at once.
                    let body = format!("{path}\0{token}\0");
                    self.send(msg::WATCH_EVENT, 0, 0, body.as_bytes());
                    Ok(b"OK\0".to_vec())
                }
                msg::UNWATCH => {
                    let token = strings(rest).first().cloned().unwrap_or_default();
                    let before = self.watches.len();
                    self.watches.retain(|(p, t)| !(p == path && *t == token));
                    if before == self.watches.len() {
                        return Err("ENOENT");
                    }
                    Ok(b"OK\0".to_vec())
                }
                msg::TRANSACTION_START => {
                    let id = self.next_tx;
                    self.next_tx += 1;
                    self.txs.insert(id, (self.store.clone(), self.generation));
                    Ok(format!("{id}\0").into_bytes())
                }
                msg::TRANSACTION_END => {
                    let (copy, gen_at_start) = self.txs.remove(&tx).ok_or("ENOENT")?;
                    // For END the "path" slot holds the T/F flag.
                    if path == "T" {
                        if self.fail_commits > 0 || gen_at_start != self.generation {
                            self.fail_commits = self.fail_commits.saturating_sub(1);
                            return Err("EAGAIN");
                        }
                        self.store = copy;
                        self.generation += 1;
                    }
                    Ok(b"OK\0".to_vec())
                }
                _ => Err("ENOSYS"),
            }
        };
        if let Some(p) = changed
            && tx == 0
        {
            self.generation += 1;
            self.fire(&p);
        }
        res
    }
}

struct Hooks(Rc<RefCell<Fake>>);

impl XsHooks for Hooks {
    fn notify(&mut self) {
        self.0.borrow_mut().notified += 1;
    }
    fn wait(&mut self) {
        self.0.borrow_mut().step();
    }
}

/// A client and its fake server on a fresh page whose four indices start
/// at `start`.
fn setup(
    chunk: usize,
    start: u32,
) -> (
    Xenstore<Hooks>,
    Rc<RefCell<Fake>>,
    Box<XenstoreDomainInterface>,
) {
    let mut page = Box::new(XenstoreDomainInterface::default());
    page.req_cons = start;
    page.req_prod = start;
    page.rsp_cons = start;
    page.rsp_prod = start;
    let raw: *mut XenstoreDomainInterface = &mut *page;
    let fake = Rc::new(RefCell::new(Fake::new(raw, chunk)));
    // SAFETY: the box is returned to the test and outlives the client.
    let xs = unsafe { Xenstore::new(raw, Hooks(fake.clone())) };
    (xs, fake, page)
}

const T: TxId = TxId::NONE;

#[test]
fn read_write_mkdir_rm_directory() {
    let (mut xs, _fake, _page) = setup(64, 0);
    xs.write(T, "/local/domain/1/name", b"guest").unwrap();
    assert_eq!(xs.read(T, "/local/domain/1/name").unwrap(), b"guest");
    xs.mkdir(T, "/local/domain/1/device").unwrap();
    let mut dir = xs.directory(T, "/local/domain/1").unwrap();
    dir.sort();
    assert_eq!(dir, ["device", "name"]);
    assert_eq!(xs.read(T, "/nope"), Err(XenErrno::ENOENT));
    xs.rm(T, "/local/domain/1").unwrap();
    assert_eq!(xs.read(T, "/local/domain/1/name"), Err(XenErrno::ENOENT));
    assert!(xs.directory(T, "/local/domain").unwrap().is_empty());
}

#[test]
fn large_messages_cross_the_ring_end_in_small_pieces() {
    // Indices start near the 1 KiB boundary and near u32 wrap; 7-byte
    // steps split headers and payloads everywhere.
    for start in [1000, u32::MAX - 5] {
        let (mut xs, fake, _page) = setup(7, start);
        let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        xs.write(T, "/big", &big).unwrap();
        assert_eq!(xs.read(T, "/big").unwrap(), big);
        assert!(xs.stats().waits > 3000 / 7);
        assert!(fake.borrow().notified > 0);
    }
    let (mut xs, _fake, _page) = setup(7, 0);
    let too_big = vec![0u8; XENSTORE_PAYLOAD_MAX + 1];
    assert_eq!(xs.write(T, "/x", &too_big), Err(XenErrno::E2BIG));
}

#[test]
fn watch_events_are_queued_apart_from_replies() {
    let (mut xs, fake, _page) = setup(13, 900);
    xs.watch("/backend", "tok").unwrap();
    // The initial firing.
    assert_eq!(
        xs.wait_watch().unwrap(),
        WatchEvent {
            path: "/backend".into(),
            token: "tok".into()
        }
    );
    // A write fires the watch; its event arrives before the reply and must
    // not be taken for it.
    xs.write(T, "/backend/vif/0", b"x").unwrap();
    xs.write(T, "/other", b"y").unwrap();
    assert_eq!(xs.read(T, "/backend/vif/0").unwrap(), b"x");
    let ev = xs.poll_watch().unwrap().unwrap();
    assert_eq!(
        (ev.path.as_str(), ev.token.as_str()),
        ("/backend/vif/0", "tok")
    );
    assert_eq!(xs.poll_watch().unwrap(), None, "no event for /other");
    xs.unwatch("/backend", "tok").unwrap();
    xs.write(T, "/backend/vif/1", b"z").unwrap();
    fake.borrow_mut().step();
    assert_eq!(xs.poll_watch().unwrap(), None);
    assert_eq!(xs.unwatch("/backend", "tok"), Err(XenErrno::ENOENT));
    assert_eq!(xs.stats().watch_events, 2);
}

#[test]
fn permissions_round_trip() {
    let (mut xs, _fake, _page) = setup(32, 0);
    xs.write(T, "/p", b"").unwrap();
    let perms = [
        Perm {
            domid: 1,
            access: Access::None,
        },
        Perm {
            domid: 0,
            access: Access::Both,
        },
        Perm {
            domid: 7,
            access: Access::Read,
        },
    ];
    xs.set_perms(T, "/p", &perms).unwrap();
    assert_eq!(xs.get_perms(T, "/p").unwrap(), perms);
    assert_eq!(xs.set_perms(T, "/q", &perms), Err(XenErrno::ENOENT));
}

#[test]
fn transactions_retry_on_eagain() {
    let (mut xs, fake, _page) = setup(50, 0);
    xs.write(T, "/counter", b"1").unwrap();
    fake.borrow_mut().fail_commits = 2;
    let mut runs = 0;
    let v = xs
        .transaction(5, |xs, tx| {
            runs += 1;
            let n: u32 = String::from_utf8(xs.read(tx, "/counter")?)
                .unwrap()
                .parse()
                .unwrap();
            xs.write(tx, "/counter", format!("{}", n + 1).as_bytes())?;
            Ok(n + 1)
        })
        .unwrap();
    assert_eq!((v, runs), (2, 3));
    assert_eq!(xs.stats().tx_retries, 2);
    assert_eq!(xs.read(T, "/counter").unwrap(), b"2");

    // Too many conflicts: EAGAIN after the bound.
    fake.borrow_mut().fail_commits = 10;
    assert_eq!(xs.transaction(3, |_, _| Ok(())), Err(XenErrno::EAGAIN));
    // A failing body aborts: nothing is written.
    fake.borrow_mut().fail_commits = 0;
    let r: Result<(), _> = xs.transaction(3, |xs, tx| {
        xs.write(tx, "/counter", b"99")?;
        xs.read(tx, "/missing").map(drop)
    });
    assert_eq!(r, Err(XenErrno::ENOENT));
    assert_eq!(xs.read(T, "/counter").unwrap(), b"2");
    assert!(fake.borrow().txs.is_empty(), "every transaction was ended");
}

#[test]
fn error_names_map_to_errno() {
    assert_eq!(errno_of("EACCES"), XenErrno::EACCES);
    assert_eq!(errno_of("EAGAIN"), XenErrno::EAGAIN);
    assert_eq!(errno_of("EISCONN"), XenErrno::EISCONN);
    assert_eq!(errno_of("EWHAT"), XenErrno::EINVAL);
}

#[test]
fn reconnect_drops_the_old_connections_bytes_on_a_ring_kept_as_saved() {
    let (mut xs, fake, mut page) = setup(13, 900);
    xs.watch("/a", "ta").unwrap();
    while xs.poll_watch().unwrap().is_some() {}
    // A PV domain resumed: the page as saved, with half a message of the
    // old xenstored in the reply ring, and a new xenstored that goes on
    // from the page's indices.
    let header = [msg::WATCH_EVENT, 0, 0, 40u32];
    for (i, b) in header
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .chain(*b"/a\0")
        .enumerate()
    {
        page.rsp[(page.rsp_prod as usize + i) % XENSTORE_RING_SIZE] = b;
    }
    page.rsp_prod += 19;
    let raw: *mut XenstoreDomainInterface = &mut *page;
    *fake.borrow_mut() = Fake::new(raw, 13);
    assert_eq!(xs.reconnect().unwrap(), 1);
    assert_eq!(
        fake.borrow().watches,
        [("/a".to_string(), "ta".to_string())]
    );
    assert_eq!(xs.wait_watch().unwrap().token, "ta");
    xs.write(T, "/a/x", b"1").unwrap();
    assert_eq!(xs.wait_watch().unwrap().path, "/a/x");
}

#[test]
fn reconnect_registers_the_watches_again_on_a_cleared_ring() {
    let (mut xs, fake, mut page) = setup(13, 900);
    xs.watch("/a", "ta").unwrap();
    xs.watch("/b", "tb").unwrap();
    xs.watch("/c", "tc").unwrap();
    xs.unwatch("/b", "tb").unwrap();
    while xs.poll_watch().unwrap().is_some() {}
    // A resumed domain: the page zeroed, a xenstored that knows nothing
    // of us.
    *page = XenstoreDomainInterface::default();
    let raw: *mut XenstoreDomainInterface = &mut *page;
    *fake.borrow_mut() = Fake::new(raw, 13);
    assert_eq!(xs.reconnect().unwrap(), 2);
    let mut watched = fake.borrow().watches.clone();
    watched.sort();
    assert_eq!(
        watched,
        [
            ("/a".to_string(), "ta".to_string()),
            ("/c".to_string(), "tc".to_string())
        ]
    );
    // Each fired once at registration, and fires again on a write.
    let mut tokens: Vec<String> = (0..2).map(|_| xs.wait_watch().unwrap().token).collect();
    tokens.sort();
    assert_eq!(tokens, ["ta", "tc"]);
    xs.write(T, "/c/x", b"1").unwrap();
    assert_eq!(xs.wait_watch().unwrap().path, "/c/x");
    // An unwatch after the reconnect is known to the new xenstored.
    xs.unwatch("/a", "ta").unwrap();
}
