//! `scripts/nic-setup --dry-run` on a made-up PCI address: prints the whole plan (hugepages,
//! queue count, vfio-pci binding and back) and changes nothing.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

const ADDR: &str = "0000:7e:1f.6";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nic-setup")
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// What the plan could change. (The hugepage count is not compared: the veth testbed of
/// tests running at the same time changes it; the plan's writes to it are checked to be
/// only printed.)
fn snapshot() -> (bool, bool, bool) {
    (
        PathBuf::from(format!("/run/megatcp-nic-setup.{ADDR}")).exists(),
        PathBuf::from(format!("/sys/bus/pci/devices/{ADDR}")).exists(),
        PathBuf::from("/sys/bus/pci/drivers/vfio-pci").exists(),
    )
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let before = snapshot();
    assert!(
        !before.1,
        "{ADDR} exists on this machine: pick another made-up address"
    );

    let (ok, text) = run(&[
        "bind",
        ADDR,
        "--queues",
        "4",
        "--hugepages",
        "512",
        "--dry-run",
    ]);
    assert!(ok, "{text}");
    for want in [
        "would write: 512 > /proc/sys/vm/nr_hugepages",
        "would run: ethtool -L IFACE combined 4",
        "would run: modprobe vfio-pci",
        &format!("--backend dpdk --pci {ADDR}"),
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    // Bound through driverctl when installed, else through sysfs.
    assert!(
        text.contains(&format!(
            "would run: driverctl set-override {ADDR} vfio-pci"
        )) || (text.contains(&format!(
            "would write: vfio-pci > /sys/bus/pci/devices/{ADDR}/driver_override"
        )) && text.contains(&format!(
            "would write: {ADDR} > /sys/bus/pci/drivers/vfio-pci/bind"
        ))),
        "{text}"
    );
    // Nothing was run for real.
    assert!(!text.lines().any(|l| l.starts_with("+ ")), "{text}");

    let (ok, text) = run(&["unbind", ADDR, "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("driverctl unset-override {ADDR}"))
            || text.contains(&format!("would write: {ADDR} > /sys/bus/pci/drivers_probe")),
        "{text}"
    );
    assert!(text.contains("> /proc/sys/vm/nr_hugepages"), "{text}");

    // Bad input is refused.
    let (ok, text) = run(&["bind", "01:00.0", "--dry-run"]);
    assert!(!ok && text.contains("bad PCI address"), "{text}");
    let (ok, text) = run(&["bind", ADDR, "--queues", "x", "--dry-run"]);
    assert!(!ok && text.contains("--queues"), "{text}");

    assert_eq!(snapshot(), before, "the dry run changed the machine");
}
