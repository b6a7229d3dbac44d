//! Every architecture preset validates, and the numbers the papers fix come out of the units.

use strata_arch::presets::{PRESETS, load};
use strata_arch::units::Bytes;
use strata_arch::{Arch, LevelId};

fn preset(name: &str) -> Arch {
    load(name).expect("preset exists").unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_preset_validates_and_is_named_after_its_file() {
    for (name, _) in PRESETS {
        assert_eq!(preset(name).name, *name);
    }
    for name in ["fusemax", "flat", "unfused", "flat-edge", "h100", "a100", "t4-host-ssd", "a6000-csd"] {
        assert!(load(name).is_some(), "{name} missing");
    }
    for name in ["cambricon-llm-s", "cambricon-llm-m", "cambricon-llm-l", "m1-max", "rtx4090-host"] {
        assert!(load(name).is_some(), "{name} missing");
    }
}

#[test]
fn fusemax_numbers() {
    let a = preset("fusemax");
    assert_eq!(a.clock.0, 940e6);
    let dram = a.level(a.level_id("DRAM").unwrap());
    // 400 GiB/s at 940 MHz, in bytes per cycle.
    assert!((dram.read_bandwidth.unwrap() - 400.0 * 1073741824.0 / 940e6).abs() < 1e-9);
    let gb = a.level_id("GlobalBuffer").unwrap();
    assert_eq!(a.level(gb).capacity, Some(Bytes(16 << 20)));
    // The buffer feeds both arrays: 2D through a 256×256 register mesh, 1D through 256.
    let pe2d = a.unit_id("pe2d").unwrap();
    let rf2d = a.level_id("RF2D").unwrap();
    assert_eq!(a.path_to(rf2d), vec![LevelId(0), gb, rf2d]);
    assert_eq!(a.fanout(gb, Some(rf2d), pe2d), (256, 256));
    assert_eq!(a.fanout(rf2d, None, pe2d), (1, 1));
    assert_eq!(a.unit(pe2d).ops["exp"].cycles, 7.0);
    assert_eq!(a.unit(pe2d).pes(), 65536);
}

#[test]
fn system_presets_carry_their_device_organisation() {
    let s = preset("cambricon-llm-s");
    let flash = s.level(s.level_id("Flash").unwrap());
    let nand = flash.nand.as_ref().unwrap();
    assert_eq!((nand.channels, nand.chips_per_channel, nand.planes()), (8, 2, 64));
    let l = preset("cambricon-llm-l");
    assert_eq!(l.level(l.level_id("Flash").unwrap()).nand.as_ref().unwrap().planes(), 1024);
    let csd = preset("a6000-csd");
    let buf = csd.level(csd.level_id("CSDBuffer").unwrap());
    // The 8 × 1.4 GB/s flash channels bound the CSD's internal bandwidth (11.2 GB/s).
    assert!((buf.read_bandwidth.unwrap() * csd.clock.0 - 11.2e9).abs() < 1.0);
    assert_eq!(csd.level(csd.level_id("HostDRAM").unwrap()).parent, None);
    let h100 = preset("h100");
    let macs_per_s = h100.unit(h100.unit_id("tensor").unwrap()).pes() as f64 * h100.clock.0;
    assert!((2.0 * macs_per_s / 1e12 - 989.0).abs() < 1.0, "{}", 2.0 * macs_per_s / 1e12);
}

fn err(text: &str) -> String {
    Arch::from_toml(text).unwrap_err().to_string()
}

const MINI: &str = r#"[arch]
name = "mini"
clock = "1 GHz"
[[arch.levels]]
name = "DRAM"
kind = "dram"
read_bandwidth = "10 GB/s"
[[arch.levels]]
name = "Buf"
kind = "sram"
capacity = "64 KiB"
mesh = [4, 1]
[[arch.compute]]
name = "pe"
level = "Buf"
cols = 4
ops = { mac = { energy = "1 pJ" } }
"#;

#[test]
fn bad_architectures_are_located() {
    assert!(Arch::from_toml(MINI).is_ok());
    let cases = [
        (MINI.replace("\"10 GB/s\"", "\"0 GB/s\""), "arch.levels[0].read_bandwidth: must be positive"),
        (MINI.replace("\"64 KiB\"", "\"0 B\""), "arch.levels[1].capacity: must be positive"),
        (MINI.replace("\"64 KiB\"", "\"64 KB/s\""), "arch.levels[1].capacity: `64 KB/s`: unknown size unit"),
        (MINI.replace("level = \"Buf\"", "level = \"SRAM\""), "arch.compute[0].level: unknown level `SRAM`"),
        (MINI.replace("cols = 4", "cols = 6"), "cannot be split evenly"),
        (MINI.replace("kind = \"sram\"", "kind = \"sram\"\nparent = \"L9\""), "arch.levels[1].parent"),
        (MINI.replace("clock = \"1 GHz\"", "clock = \"fast\""), "arch.clock"),
        (MINI.replace("kind = \"sram\"", "kind = \"flash\""), "arch.levels[1].kind"),
        (MINI.replace("energy = \"1 pJ\" }", "energy = \"1 pJ\", cycles = 0 }"), "arch.compute[0].ops.mac.cycles"),
    ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "expected `{want}` in `{e}`");
    }
}

#[test]
fn inconsistent_dram_timing_is_rejected() {
    let text = MINI.replace(
        "read_bandwidth = \"10 GB/s\"",
        "read_bandwidth = \"10 GB/s\"\n[arch.levels.dram]\nstandard = \"DDR4\"\nchannels = 1\nbank_groups = 4\nbanks_per_group = 4\nrows = 65536\nrow_bytes = \"8 KiB\"\nbus_bits = 64\nt_ck = \"0.625 ns\"\ntiming = { tRCD = 22, tRAS = 10 }",
    );
    assert!(
        err(&text).contains("arch.levels[0].dram.timing.tRAS: tRAS (10) must be at least tRCD (22)"),
        "{}",
        err(&text)
    );
}

/// Link presets fill a link's kind, bandwidth, count, latency and energy; keys written beside
/// `preset` override it; an unknown preset or a link with no bandwidth is a located error.
#[test]
fn link_presets_fill_and_are_overridden() {
    let base = |links: &str| {
        format!(
            "[arch]\nname = \"x\"\nclock = \"1 GHz\"\n{links}\n[[arch.levels]]\nname = \"Host\"\nkind = \"dram\"\n[[arch.levels]]\nname = \"HBM\"\nkind = \"hbm\"\nlink = \"up\"\nread_bandwidth = \"1 TB/s\"\n[[arch.compute]]\nname = \"pe\"\nlevel = \"HBM\"\ncols = 1\nops = {{ mac = {{ energy = \"1 pJ\" }} }}\n"
        )
    };
    for (name, _) in strata_arch::arch::LINK_PRESETS {
        let a = Arch::from_toml(&base(&format!("[[arch.links]]\nname = \"up\"\npreset = \"{name}\""))).unwrap();
        let l = &a.links[0];
        assert!(l.bandwidth.0 > 0.0 && l.latency.is_some() && l.energy_per_bit.0 > 0.0, "{name}");
    }
    let a = Arch::from_toml(&base("[[arch.links]]\nname = \"up\"\npreset = \"nvlink4\"")).unwrap();
    assert_eq!(a.links[0].count, 18);
    assert!((a.links[0].bandwidth.0 * 18.0 - 450e9).abs() < 1.0);
    let a = Arch::from_toml(&base("[[arch.links]]\nname = \"up\"\npreset = \"pcie4-x16\"\nbandwidth = \"25 GB/s\""))
        .unwrap();
    assert_eq!(a.links[0].bandwidth.0, 25e9);
    assert_eq!(a.links[0].latency.unwrap().0, 500e-9);
    // The link caps the HBM level's fill bandwidth.
    let hbm = a.level(a.level_id("HBM").unwrap());
    assert!((hbm.read_bandwidth.unwrap() - 25.0).abs() < 1e-9 && (hbm.port_bandwidth.unwrap() - 1000.0).abs() < 1e-9);
    let e = Arch::from_toml(&base("[[arch.links]]\nname = \"up\"\npreset = \"pcie9\"")).unwrap_err();
    assert!(e.path == "arch.links[0].preset" && e.reason.contains("pcie4-x16"), "{e:?}");
    let e = Arch::from_toml(&base("[[arch.links]]\nname = \"up\"\nkind = \"pcie\"")).unwrap_err();
    assert_eq!(e.path, "arch.links[0].bandwidth");
}
