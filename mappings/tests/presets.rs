//! Every mapping preset resolves against the workload and architecture presets it names, and
//! bad mappings are rejected with the key path and the reason.

use strata_arch::Arch;
use strata_mappings::CascadeMapping;
use strata_mappings::presets::PRESETS;
use strata_workloads::presets as wp;
use strata_workloads::{Cascade, WorkloadSpec};

fn cascade(name: &str) -> Cascade {
    match WorkloadSpec::from_toml(wp::find(name).unwrap().text).unwrap() {
        WorkloadSpec::Attention(a) => a.shape().unwrap().cascade_spec(&a.name, &a.description).build().unwrap(),
        WorkloadSpec::Cascade(c) => c.build().unwrap(),
        WorkloadSpec::Model(_) => panic!("mapping presets target cascades"),
    }
}

#[test]
fn every_mapping_preset_resolves() {
    for p in PRESETS {
        let arch = strata_arch::presets::load(p.arch).unwrap().unwrap();
        let m = CascadeMapping::from_toml(p.text, &cascade(p.workload), &arch)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert_eq!(m.name, p.name);
    }
}

fn err(text: &str, workload: &str, arch: &Arch) -> String {
    CascadeMapping::from_toml(text, &cascade(workload), arch).unwrap_err().to_string()
}

#[test]
fn bad_mappings_are_located() {
    let fusemax = strata_arch::presets::load("fusemax").unwrap().unwrap();
    let gemm = strata_mappings::presets::find("gemm-fusemax").unwrap().text;
    let cases = [
        (gemm.replace("\"RF2D\"", "\"RF9\""), "mapping.einsums[0].levels[2].level: level `RF9` is not on the path"),
        (gemm.replace("k=*", "k=1000"), "loops over rank `k` cover 1000 of its 1024"),
        (gemm.replace("m=256@x", "m=512@x"), "use 512 along x but the array offers 256"),
        (gemm.replace("\"pe2d\"", "\"npu\""), "mapping.einsums[0].unit: unknown compute unit `npu`"),
        (gemm.replace("\"k=*\"", "\"q=*\""), "unknown rank `q`"),
        (
            gemm.replace("\"m=*\", \"n=*\"", "\"m=*\"").replace(", \"n=256@y\"", ""),
            "rank `n` of einsum `Z` has no loop",
        ),
        (gemm.replace("\"m=*\"", "\"m=x\""), "the bound must be a positive integer"),
        (gemm.replace("einsum = \"Z\"", "einsum = \"Y\""), "unknown einsum `Y`"),
        (
            gemm.replace("{ level = \"RF2D\" }", "{ level = \"RF2D\", keep = [\"W\"] }"),
            "`W` is not a tensor of einsum `Z`",
        ),
        (
            gemm.replace("\"m=*\", \"n=*\"", "\"m=4\", \"n=*\"").replace("\"k=*\", ", "\"k=*\", \"m=*\", "),
            "only the outermost loop of rank `m` may be `*`",
        ),
    ];
    for (text, want) in cases {
        let e = err(&text, "gemm", &fusemax);
        assert!(e.contains(want), "expected `{want}` in `{e}`");
    }
    // FLAT's 2D PEs have no max unit, so FuseMax's binding does not fit them.
    let flat = strata_arch::presets::load("flat").unwrap().unwrap();
    let fm = strata_mappings::presets::find("fusemax-1pass").unwrap().text;
    let e = err(fm, "attention-1pass", &flat);
    assert!(e.contains("needs `max` but unit `pe2d` has only add, mac"), "{e}");
    // An on-chip intermediate needs its producer and consumers in one group.
    let broken = fm.replace("members = [\"running\", \"AV\"]", "members = [\"running\"]").replace(
        "{ level = \"DRAM\", keep = [\"AV\"] }",
        "{ level = \"DRAM\", loops = [\"b=*\", \"h=*\", \"p=*\"], keep = [\"AV\"] }",
    );
    let e = err(&broken, "attention-1pass", &fusemax);
    assert!(e.contains("`RNV` stays at `GlobalBuffer`"), "{e}");
    // A recurrence steps only in shared loops.
    let prefix_sum = r#"[mapping]
name = "ungrouped"
[[mapping.einsums]]
einsum = "S"
unit = "pe1d"
levels = [{ level = "DRAM", loops = ["i=*"] }]
[[mapping.einsums]]
einsum = "TOTAL"
unit = "pe1d"
levels = [{ level = "DRAM" }]
"#;
    let e = err(prefix_sum, "prefix-sum", &fusemax);
    assert!(e.contains("einsum `S` steps through `i`"), "{e}");
    let grouped = prefix_sum.replace(
        "loops = [\"i=*\"] }]\n[[mapping.einsums]]\neinsum = \"TOTAL\"",
        "}]\n[[mapping.einsums]]\neinsum = \"TOTAL\"",
    ) + "[[mapping.groups]]\nname = \"scan\"\nprefix = [\"i=*\"]\nmembers = [\"S\"]\n";
    assert!(CascadeMapping::from_toml(&grouped, &cascade("prefix-sum"), &fusemax).is_ok());
}
