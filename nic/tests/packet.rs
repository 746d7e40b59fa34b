//! The raw-frame transmitter against the real kernel: frames sent on the loopback interface
//! are captured by tcpdump and read back byte for byte (root: `CAP_NET_RAW`); without root,
//! opening fails with the operating system's error.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use megatcp_nic::packet::{PacketError, PacketTx};

/// An EtherType reserved for local experiments (IEEE 802 "local experimental 1"): no
/// protocol of the kernel handles it, so the frames end at the capture.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Frame `i`: loopback's zero MACs, the experimental EtherType, then a payload that names
/// `i` and the run (so that another process's frames cannot be mistaken for ours).
fn frame(run: u32, i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(&run.to_be_bytes());
    f.extend_from_slice(&i.to_be_bytes());
    // Lengths vary from the minimum payload to 300 bytes.
    let len = 46 + (i as usize * 7) % 255;
    while f.len() < 14 + len {
        f.push((f.len() as u32 ^ i) as u8);
    }
    f
}

/// The frames of a classic pcap file.
fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    assert!(bytes.len() >= 24, "no pcap header");
    let le = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32_at(&bytes[at + 8..]) as usize;
        at += 16;
        if at + caplen > bytes.len() {
            break;
        }
        out.push(bytes[at..at + caplen].to_vec());
        at += caplen;
    }
    out
}

#[test]
fn frames_sent_on_loopback_arrive_byte_for_byte() {
    if !is_root() {
        let e = PacketTx::open("lo").unwrap_err();
        assert!(matches!(e, PacketError::Os { .. }), "{e}");
        eprintln!("note: not root: only the refusal was checked ({e})");
        return;
    }
    let path = std::env::temp_dir().join(format!("megatcp-packet-{}.pcap", std::process::id()));
    let mut dump = Command::new("tcpdump")
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-s",
            "512",
            "-B",
            "8192",
            "-w",
        ])
        .arg(&path)
        .args(["ether", "proto", "0x88b5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump (scripts/install-deps installs it)");
    // tcpdump says "listening on lo" once its capture is open.
    let mut err = BufReader::new(dump.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !line.contains("listening on") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump ended");
        assert!(Instant::now() < deadline, "tcpdump did not start");
    }

    let mut tx = PacketTx::open("lo").unwrap();
    assert_eq!(tx.mac(), [0; 6], "loopback has a zero hardware address");
    let run = std::process::id();
    let frames: Vec<Vec<u8>> = (0..1000).map(|i| frame(run, i)).collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    let mut sent = 0;
    while sent < refs.len() {
        sent += tx.send(&refs[sent..]).unwrap();
    }
    let s = tx.stats();
    assert_eq!(s.frames, 1000);
    assert_eq!(s.bytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
    assert!(s.calls >= 1000 / megatcp_nic::packet::BATCH as u64, "{s:?}");
    // A bad frame is refused before anything is sent.
    assert!(matches!(
        tx.send(&[&frames[0], &[0u8; 5]]),
        Err(PacketError::BadFrame(5))
    ));
    assert_eq!(tx.stats().frames, 1000);

    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let captured = pcap_frames(&std::fs::read(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    let mut seen = vec![false; frames.len()];
    for f in captured
        .iter()
        .filter(|f| f.len() >= 22 && f[14..18] == run.to_be_bytes())
    {
        let i = u32::from_be_bytes([f[18], f[19], f[20], f[21]]) as usize;
        assert_eq!(f, &frames[i], "frame {i} changed on the way");
        seen[i] = true;
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert_eq!(missing, 0, "{missing} of 1000 frames were not captured");
}
