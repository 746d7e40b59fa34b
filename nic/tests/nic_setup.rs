//! `scripts/nic-setup --dry-run` on a made-up PCI address: prints the whole plan (hugepages,
//! queue count, vfio-pci binding and back) and changes nothing. On a made-up sysfs tree
//! (`MEGATCP_SYSFS`): the IOMMU check before vfio-pci (a real run refuses without one),
//! hugepages on the NIC's NUMA node and 1 GiB pages, an mlx5 NIC left on its kernel driver;
//! and the AF_XDP preparation (queues, busy polling) and its undo.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const ADDR: &str = "0000:7e:1f.6";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/nic-setup")
}

fn run(args: &[&str]) -> (bool, String) {
    run_in(None, args)
}

/// Runs the script with sysfs at `sysfs` (a made-up tree) when given.
fn run_in(sysfs: Option<&Path>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args);
    if let Some(s) = sysfs {
        cmd.env("MEGATCP_SYSFS", s);
    }
    let out = cmd.output().unwrap();
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

/// A made-up sysfs tree holding one NIC at [`ADDR`] on NUMA node 1, bound to `driver`, in
/// IOMMU group 7 when `iommu`; removed when dropped.
struct FakeSysfs(PathBuf);

impl FakeSysfs {
    fn new(name: &str, driver: &str, iommu: bool) -> FakeSysfs {
        let root =
            std::env::temp_dir().join(format!("megatcp-nic-setup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dev = root.join("bus/pci/devices").join(ADDR);
        std::fs::create_dir_all(dev.join("net/eth9")).unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        let drivers = root.join("bus/pci/drivers");
        std::fs::create_dir_all(drivers.join(driver)).unwrap();
        std::os::unix::fs::symlink(drivers.join(driver), dev.join("driver")).unwrap();
        if iommu {
            let group = root.join("kernel/iommu_groups/7");
            std::fs::create_dir_all(&group).unwrap();
            std::os::unix::fs::symlink(&group, dev.join("iommu_group")).unwrap();
        }
        for kb in ["2048", "1048576"] {
            let d = root.join(format!(
                "devices/system/node/node1/hugepages/hugepages-{kb}kB"
            ));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("nr_hugepages"), "3\n").unwrap();
        }
        FakeSysfs(root)
    }

    fn hugepages(&self, kb: &str) -> String {
        std::fs::read_to_string(self.0.join(format!(
            "devices/system/node/node1/hugepages/hugepages-{kb}kB/nr_hugepages"
        )))
        .unwrap()
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn vfio_pci_needs_an_iommu_and_hugepages_go_to_the_nic_s_node() {
    let state = PathBuf::from(format!("/run/megatcp-nic-setup.{ADDR}"));
    let before = state.exists();

    let off = FakeSysfs::new("no-iommu", "ixgbe", false);
    let (ok, text) = run_in(Some(&off.0), &["bind", ADDR, "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("iommu: would stop here: no IOMMU group")
            && text.contains("intel_iommu=on iommu=pt"),
        "{text}"
    );
    if megatcp_test_support::is_root() {
        // A real run stops there, before it changes anything.
        let (ok, text) = run_in(Some(&off.0), &["bind", ADDR, "--hugepages", "8"]);
        assert!(!ok && text.contains("the IOMMU is off"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("+ ")), "{text}");
        assert_eq!(off.hugepages("2048"), "3\n");
        assert_eq!(state.exists(), before);
    }

    let on = FakeSysfs::new("iommu", "ixgbe", true);
    let (ok, text) = run_in(
        Some(&on.0),
        &[
            "bind",
            ADDR,
            "--page-size",
            "1G",
            "--hugepages",
            "4",
            "--dry-run",
        ],
    );
    assert!(ok, "{text}");
    let node1 =
        on.0.join("devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages");
    for want in [
        "driver ixgbe, interface eth9) -> vfio-pci, 4 hugepages of 1G (NUMA node 1)".to_string(),
        format!("iommu: {ADDR} is in IOMMU group 7"),
        format!("would write: 4 > {}", node1.display()),
        "would run: ip link set eth9 down".to_string(),
        "would run: modprobe vfio-pci".to_string(),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    let (ok, text) = run_in(
        Some(&on.0),
        &["bind", ADDR, "--node", "0", "--hugepages", "4", "--dry-run"],
    );
    assert!(
        ok && text.contains("node0/hugepages/hugepages-2048kB"),
        "{text}"
    );
    let (ok, text) = run_in(Some(&on.0), &["bind", ADDR, "--page-size", "4K"]);
    assert!(
        !ok && text.contains("--page-size must be 2M or 1G"),
        "{text}"
    );
    assert_eq!(on.hugepages("1048576"), "3\n");
}

#[test]
fn an_mlx5_nic_stays_on_its_kernel_driver() {
    let mlx = FakeSysfs::new("mlx5", "mlx5_core", false);
    let (ok, text) = run_in(Some(&mlx.0), &["bind", ADDR, "--queues", "4", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("stays on its kernel driver") && text.contains("bifurcated"),
        "{text}"
    );
    assert!(
        text.contains("would run: ethtool -L eth9 combined 4"),
        "{text}"
    );
    assert!(
        text.contains(&format!("--backend dpdk --pci {ADDR}")),
        "{text}"
    );
    // No vfio-pci, no IOMMU needed, the interface stays up.
    for not in ["vfio-pci", "iommu:", "link set eth9 down"] {
        assert!(!text.contains(not), "{not:?} in:\n{text}");
    }
}

#[test]
fn afxdp_preparation_sets_queues_and_busy_polling_on_request_and_undoes_them() {
    let iface = "mtcpfake0";
    let state = PathBuf::from(format!("/run/megatcp-nic-setup.{iface}"));
    let before = state.exists();
    let (ok, text) = run(&["afxdp", iface, "--queues", "4", "--dry-run"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("would run: ethtool -L {iface} combined 4")),
        "{text}"
    );
    assert!(
        !text.contains("busy_poll"),
        "busy polling without --busy-poll:\n{text}"
    );
    let (ok, text) = run(&["afxdp", iface, "--queues", "4", "--busy-poll", "--dry-run"]);
    assert!(ok, "{text}");
    for want in [
        format!("would run: ethtool -L {iface} combined 4"),
        "would write: 50 > /proc/sys/net/core/busy_poll".to_string(),
        "would write: 50 > /proc/sys/net/core/busy_read".to_string(),
        format!("would write: 2 > /sys/class/net/{iface}/napi_defer_hard_irqs"),
        format!("would write: 200000 > /sys/class/net/{iface}/gro_flush_timeout"),
        format!("--backend afxdp --iface {iface} --ip ADDR/PREFIX --cores 0-3"),
        "zero-copy support unknown".to_string(),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    let (ok, text) = run(&["afxdp-undo", iface, "--dry-run"]);
    assert!(ok, "{text}");
    assert!(text.contains("> /proc/sys/net/core/busy_poll"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("+ ")), "{text}");
    let (ok, text) = run(&["afxdp", "bad/name", "--dry-run"]);
    assert!(!ok && text.contains("bad interface name"), "{text}");
    assert_eq!(state.exists(), before, "the dry run changed the machine");
}
