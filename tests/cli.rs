//! Integration tests of the `strata` binary: it runs from any directory on embedded presets,
//! and every kind of bad input exits 2 with a message naming the file, the key and the reason.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `text` to a fresh file in the temp directory and returns its path.
/// A file of this repository, as text.
fn repo_text(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn file(name: &str, text: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("strata-cli-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const MODEL: &str =
    "[model]\nname = \"m\"\nlayers = 2\nd_model = 64\nheads = 4\nffn_dim = 128\nactivation = \"gelu\"\nvocab = 100\n";

const CASCADE: &str = r#"[cascade]
name = "c"
params = { N = 8 }
ranks = { m = "N", p = "N" }
[[cascade.einsums]]
expr = "GM[p] = QK[m,p]"
reduce = "max"
"#;

#[test]
fn decode_show_reports_llama2_7b_kv_bytes_per_token() {
    let o = strata(&["workload", "show", "llama2-7b", "--phase", "decode", "--seq", "4096"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("KV bytes per token = 524288"), "{out}");
    assert!(out.contains("RM[b,h,m1+1,p] = max(RM[b,h,m1,p], LM[b,h,m1,p])"), "{out}");
    assert!(out.contains("phase decode, context 4096"), "{out}");
}

#[test]
fn shows_every_kind_of_workload() {
    for args in [
        &["workload", "show", "attention-3pass"][..],
        &["workload", "show", "attention-2pass", "--seq", "1000", "--causal"],
        &["workload", "show", "attention-gqa", "--passes", "3"],
        &["workload", "show", "gemm", "--set", "K=64"],
        &["workload", "show", "prefix-sum"],
        &["workload", "show", "opt-175b", "--batch", "8"],
        &["workload", "show", "yi-34b", "--phase", "decode", "--seq", "50000"],
    ] {
        let o = strata(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("totals:"), "{args:?}");
    }
    let o = strata(&["workload", "show", "yi-34b", "--phase", "decode", "--seq", "4096"]);
    assert!(stdout(&o).contains("KV bytes per token = 245760"));
}

#[test]
fn lists_presets_by_kind() {
    let o = strata(&["list"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for name in ["bert", "trxl", "t5", "xlm", "opt-6.7b", "opt-175b", "llama2-70b", "yi-34b", "attention-1pass", "gemm"]
    {
        assert!(out.contains(name), "{name} missing from\n{out}");
    }
    assert!(out.find("model presets:") < out.find("attention presets:"));
    // Every kind of embedded preset is listed (defect 9: only workloads were).
    for (kind, name) in [
        ("architecture presets:", "fusemax"),
        ("DRAM presets:", "hbm2"),
        ("NAND presets:", "tlc-client"),
        ("link presets:", "pcie4-x4"),
        ("mapping presets:", "fusemax-1pass"),
        ("offload cost profile presets:", "flexgen-t4-ssd"),
        ("experiment presets:", "cambricon-scaling"),
        ("system presets:", "insta-sparf"),
        ("experiment kinds:", "serving"),
    ] {
        let at = out.find(kind).unwrap_or_else(|| panic!("{kind} missing from\n{out}"));
        assert!(out[at..].contains(name), "{name} missing after {kind}");
    }
}

#[test]
fn validates_every_shipped_preset_file_and_hf_configs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<String> = Vec::new();
    for dir in [
        "workloads/presets/models",
        "workloads/presets/attention",
        "workloads/presets/cascades",
        "workloads/tests/fixtures",
        "arch/presets",
        "arch/presets/dram",
        "arch/presets/nand",
        "arch/presets/links",
        "mappings/presets",
        "mappings/presets/offload",
        "experiments",
    ] {
        for e in std::fs::read_dir(format!("{root}/{dir}")).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml" || x == "json") {
                files.push(path.display().to_string());
            }
        }
    }
    let args: Vec<&str> = std::iter::once("validate").chain(files.iter().map(String::as_str)).collect();
    let o = strata(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with("ok ")).count(), files.len());
}

/// One bad input: the file's text, what must appear in stderr (besides the file name).
fn bad(name: &str, text: &str, expect: &[&str]) {
    let path = file(name, text);
    let p = path.display().to_string();
    for args in [vec!["validate", &p], vec!["workload", "show", &p]] {
        let o = strata(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.contains(&p), "message names the file: {err}");
        for e in expect {
            assert!(err.contains(e), "expected `{e}` in: {err}");
        }
    }
}

#[test]
fn malformed_toml() {
    bad("broken.toml", "[model\nname = 1\n", &["line 1"]);
}

#[test]
fn unknown_key() {
    bad("typo.toml", &MODEL.replace("heads = 4", "hedas = 4"), &["model.hedas", "unknown field"]);
}

#[test]
fn zero_heads() {
    bad("zero.toml", &MODEL.replace("heads = 4", "heads = 0"), &["model.heads", "must be positive (got 0)"]);
}

#[test]
fn negative_layers() {
    bad("neg.toml", &MODEL.replace("layers = 2", "layers = -3"), &["model.layers", "got -3"]);
}

#[test]
fn kv_heads_that_do_not_divide_heads() {
    bad("gqa.toml", &format!("{MODEL}kv_heads = 3\n"), &["model.kv_heads", "must divide heads"]);
}

#[test]
fn wrong_type() {
    bad("type.toml", &MODEL.replace("d_model = 64", "d_model = \"big\""), &["model.d_model", "line 4"]);
}

#[test]
fn unknown_activation() {
    bad("act.toml", &MODEL.replace("\"gelu\"", "\"tanh\""), &["model.activation", "unknown variant"]);
}

#[test]
fn unknown_rank() {
    bad("rank.toml", &CASCADE.replace("QK[m,p]", "QK[z,p]"), &["cascade.einsums[0].expr", "unknown rank `z`"]);
}

#[test]
fn tensor_produced_twice() {
    let text = format!("{CASCADE}[[cascade.einsums]]\nexpr = \"GM[p] = QK[m,p]\"\nreduce = \"max\"\n");
    bad("twice.toml", &text, &["cascade.einsums[1]", "`GM` is already produced by einsums[0]"]);
}

#[test]
fn cycle() {
    let text = CASCADE.replace("GM[p] = QK[m,p]", "GM[p] = X[m,p]")
        + "[[cascade.einsums]]\nexpr = \"X[m,p] = Y[m,p] + QK[m,p]\"\n[[cascade.einsums]]\nexpr = \"Y[m,p] = X[m,p] * QK[m,p]\"\n";
    bad("cycle.toml", &text, &["form a cycle: X -> Y -> X"]);
}

#[test]
fn zero_size() {
    bad("size.toml", &CASCADE.replace("N = 8", "N = 0"), &["cascade.params.N", "must be positive"]);
}

#[test]
fn unknown_parameter() {
    bad("param.toml", &CASCADE.replace("p = \"N\"", "p = \"Q\""), &["cascade.ranks.p", "unknown parameter `Q`"]);
}

#[test]
fn running_tensor_without_init() {
    let text = "[cascade]\nname = \"s\"\nranks = { i = 4 }\n[[cascade.einsums]]\nexpr = \"S[i+1] = S[i] + A[i]\"\n";
    bad("init.toml", text, &["cascade.tensors.S.init", "needs an initial value"]);
}

#[test]
fn bad_einsum_syntax() {
    bad("syntax.toml", &CASCADE.replace("QK[m,p]", "QK[m,p"), &["cascade.einsums[0].expr", "expected ']'"]);
}

#[test]
fn attention_passes_out_of_range() {
    let text = "[attention]\nname = \"a\"\npasses = 4\nbatch = 1\nheads = 2\nseq = 16\nhead_dim = 8\n";
    bad("passes.toml", text, &["attention.passes", "must be 1, 2 or 3"]);
}

#[test]
fn hugging_face_config_missing_a_key() {
    bad("config.json", r#"{"model_type": "llama", "hidden_size": 4096}"#, &["num_hidden_layers", "missing"]);
}

#[test]
fn two_kinds_in_one_file() {
    bad("two.toml", &format!("{MODEL}{CASCADE}"), &["exactly one top-level table"]);
}

#[test]
fn unknown_preset() {
    let o = strata(&["workload", "show", "llama3-8b"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`llama3-8b` is neither a preset nor a file"), "{}", stderr(&o));
}

#[test]
fn missing_file_for_validate() {
    let o = strata(&["validate", "/nonexistent/strata.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/strata.toml: cannot read"), "{}", stderr(&o));
}

#[test]
fn unknown_set_parameter_and_bad_flags() {
    let o = strata(&["workload", "show", "gemm", "--set", "Q=3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no parameter `Q`"), "{}", stderr(&o));
    let o = strata(&["workload", "show", "llama2-7b", "--seq", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = strata(&["workload", "show", "gemm", "--seq", "10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--set NAME=VALUE"), "{}", stderr(&o));
}

#[test]
fn validate_reports_every_bad_file_and_passes_good_ones() {
    let good = file("good.toml", MODEL);
    let bad1 = file("bad1.toml", &MODEL.replace("heads = 4", "heads = 0"));
    let bad2 = file("bad2.toml", &CASCADE.replace("N = 8", "N = -1"));
    let (g, b1, b2) = (good.display().to_string(), bad1.display().to_string(), bad2.display().to_string());
    let o = strata(&["validate", &g, &b1, &b2]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains(&format!("ok  {g}")));
    let err = stderr(&o);
    assert!(err.contains(&b1) && err.contains(&b2), "{err}");
}

#[test]
fn eval_reports_the_fusemax_mapping_of_bert_1k() {
    let o = strata(&["eval", "--mapping", "fusemax-1pass"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // |Q| + |K| + |V| + |AV| for B 64, H 12, N 1024, E 64 at 2 B: the artifact's 4.027e8 B.
    assert!(out.contains("off-chip traffic: 402653184 B"), "{out}");
    assert!(out.contains("violations: none"), "{out}");
    let o = strata(&["eval", "--mapping", "fusemax-1pass", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["offchip_bytes"], 402653184u64);
    assert_eq!(v["einsums"].as_array().unwrap().len(), 12);
}

#[test]
fn eval_takes_files_and_presets_together() {
    let root = env!("CARGO_MANIFEST_DIR");
    let arch = format!("{root}/arch/presets/fusemax.toml");
    let mapping = format!("{root}/mappings/presets/gemm-fusemax.toml");
    let o = strata(&["eval", "--arch", &arch, "--workload", "gemm", "--mapping", &mapping]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("mapping gemm-fusemax of gemm on fusemax"));
    let o = strata(&["validate", &arch, &mapping]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// An eval with one bad file: exit 2, the file and the expected words in stderr.
fn bad_eval(args: &[&str], expect: &[&str]) {
    let o = strata(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in: {err}");
    }
}

#[test]
fn eval_rejects_bad_mappings_and_architectures() {
    let root = env!("CARGO_MANIFEST_DIR");
    let gemm = std::fs::read_to_string(format!("{root}/mappings/presets/gemm-fusemax.toml")).unwrap();
    let arch = std::fs::read_to_string(format!("{root}/arch/presets/fusemax.toml")).unwrap();
    // `blame` names the file the message must point at: the mapping (true) or the architecture.
    let run = |m: &str, a: &str, blame_mapping: bool, expect: &[&str]| {
        let mp = file("m.toml", m);
        let ap = file("a.toml", a);
        let (mp, ap) = (mp.display().to_string(), ap.display().to_string());
        let mut want = expect.to_vec();
        want.push(if blame_mapping { &mp } else { &ap });
        bad_eval(&["eval", "--arch", &ap, "--workload", "gemm", "--mapping", &mp], &want);
    };
    run(&gemm.replace("\"RF2D\"", "\"RF3D\""), &arch, true, &["mapping.einsums[0].levels[2].level", "not on the path"]);
    run(&gemm.replace("k=*", "k=100"), &arch, true, &["loops over rank `k` cover 100 of its 1024"]);
    run(&gemm.replace("m=256@x", "m=512@x"), &arch, true, &["512 along x but the array offers 256"]);
    run(
        &gemm.replace("unit = \"pe2d\"", "unit = \"tpu\""),
        &arch,
        true,
        &["mapping.einsums[0].unit", "unknown compute unit"],
    );
    run(
        &gemm,
        &arch.replace("read_bandwidth = \"400 GiB/s\"", "read_bandwidth = \"0 GiB/s\""),
        false,
        &["arch.levels[0].read_bandwidth", "must be positive"],
    );
    run(
        &gemm,
        &arch.replace("capacity = \"16 MiB\"", "capacity = \"0 MiB\""),
        false,
        &["arch.levels[1].capacity", "must be positive"],
    );
    // The binding is what is wrong for this architecture, so the mapping is blamed.
    run(
        &gemm,
        &arch.replace("mac = { cycles = 1, energy = \"17.1645 pJ\" }     # fpmac (§8.1)\n", ""),
        true,
        &["needs `mac` but unit `pe2d`"],
    );
    bad_eval(&["eval", "--mapping", "nope"], &["--arch is needed"]);
    bad_eval(
        &["eval", "--arch", "fusemax", "--workload", "gemm", "--mapping", "nope"],
        &["neither a mapping preset nor a file"],
    );
    bad_eval(
        &["eval", "--arch", "tpu9", "--workload", "gemm", "--mapping", "gemm-fusemax"],
        &["neither an architecture preset nor a file"],
    );
}

#[test]
fn eval_reports_capacity_violations_as_data() {
    // The same GEMM on a 64 KiB buffer: its 1 MiB of tiles do not fit; with --allow-violations
    // that is a result, not an error.
    let root = env!("CARGO_MANIFEST_DIR");
    let arch = std::fs::read_to_string(format!("{root}/arch/presets/fusemax.toml"))
        .unwrap()
        .replace("\"16 MiB\"", "\"64 KiB\"");
    let ap = file("small.toml", &arch).display().to_string();
    let o = strata(&["eval", "--arch", &ap, "--workload", "gemm", "--mapping", "gemm-fusemax", "--allow-violations"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Z needs 1.12 MiB at GlobalBuffer per instance, which holds 64.00 KiB"),
        "{}",
        stdout(&o)
    );
}

/// The acceptance of the GPU validation: every kernel measured on the H100 (L2 emptied by reading,
/// 2026-12-05), predicted from the model with device-level calibration only, has a median
/// |error| ≤ 8% (issue 20's target; 5.1% today) and a maximum ≤ 21% (20.5%; the target is 20%).
#[test]
fn validate_gpu_predicts_the_measured_h100_kernels() {
    let out = file("unused", "").parent().unwrap().join("validate-gpu");
    let o = strata(&["validate-gpu", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let pct = |key: &str| -> f64 {
        let after = &s[s.find(key).unwrap_or_else(|| panic!("{key} in {s}")) + key.len()..];
        after.trim_start().split('%').next().unwrap().trim().parse().unwrap()
    };
    let (median, max) = (pct("median |error|"), pct("max"));
    assert!(median <= 5.2 && max <= 21.0, "median {median}%, max {max}%");
    assert!(s.starts_with("85 kernels"), "{s}");
    let csv = std::fs::read_to_string(out.join("validation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 86);
    assert!(out.join("plots/predicted-vs-measured.png").exists());
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.starts_with("# GPU validation: h100 against kernels measured on NVIDIA H100 80GB HBM3"),
        "{summary}"
    );
    // calibration.csv's boost-clock GEMM (a later lease) stands in for the set's throttled one.
    assert!(summary.contains("boost-clock runs where measured) | 792.066 TFLOP/s |"), "{summary}");
    // Another preset on the same data: the summary names the preset and the measured device apart.
    let o = strata(&["validate-gpu", "--arch", "h200", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        summary.starts_with("# GPU validation: h200 against kernels measured on NVIDIA H100 80GB HBM3"),
        "{summary}"
    );
}

#[test]
fn validate_gpu_rejects_bad_measurements_and_gpu_less_architectures() {
    let o = strata(&["validate-gpu", "--arch", "fusemax", "--out", "unused"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("fusemax: arch.gpu:"), "{}", stderr(&o));
    let csv = "kind,name,m,n,k,median_us\ngemm,g,1,,4096,10\n";
    let dir = file("measurements.csv", csv).parent().unwrap().to_path_buf();
    let o = strata(&["validate-gpu", "--data", dir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("measurements.csv:2: field `n` is required for kind `gemm`"), "{}", stderr(&o));
    // calibration.csv beside a set holds calibration rows only.
    let dir =
        file("measurements.csv", "kind,name,m,n,k,median_us\ngemm,g,1,4096,4096,10\n").parent().unwrap().to_path_buf();
    std::fs::write(dir.join("calibration.csv"), "kind,name,m,n,k,median_us\ngemm,x,1,1,1,3\n").unwrap();
    let o = strata(&["validate-gpu", "--data", dir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("calibration.csv: x: only calibration rows belong here"), "{}", stderr(&o));
    let dir = file("measurements.csv", "kind,name,median_us\ntpu,x,3\n").parent().unwrap().to_path_buf();
    let o = strata(&["validate-gpu", "--data", dir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown kind `tpu`"), "{}", stderr(&o));
    // The stored H200 set (L2 emptied by writing, which the model does not describe), predicted
    // with the h200 preset and its own calibration rows; its summary names the device and
    // carries our sparse and low-rank kernels' table.
    let h200 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/gpu/h200");
    let out = dir.join("h200");
    let o =
        strata(&["validate-gpu", "--data", h200.to_str().unwrap(), "--arch", "h200", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("85 kernels: median |error| 12.7%"), "{}", stdout(&o));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("against kernels measured on NVIDIA H200") && md.contains("| lowrank_plain | 9 |"), "{md}");
    // Beside the main set, our sparse and low-rank kernels (sparse.csv) get their own table.
    let main = include_str!("../validation/gpu/h100/measurements.csv");
    let dir = file("measurements.csv", main).parent().unwrap().to_path_buf();
    let head =
        "kind,name,batch,heads,seq_kv,head_dim,label_channels,selected,tokens,d_model,ffn,rank,block_n,median_us\n";
    let rows = "ds_total,b4,4,32,16384,128,8,1024,,,,,,220\nlowrank_fused,r96m64n64,8,,,,,,32768,768,3072,96,64,900\n";
    std::fs::write(dir.join("sparse.csv"), format!("{head}{rows}")).unwrap();
    let o = strata(&["validate-gpu", "--data", dir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(dir.join("o/summary.md")).unwrap();
    assert!(
        md.contains("Our sparse and low-rank kernels") && md.contains("| lowrank_fused r96m64n64 | 900.0 |"),
        "{md}"
    );
    std::fs::write(dir.join("sparse.csv"), format!("{head}ds_bogus,x,1,1,1,1,1,1,,,,,,1\n")).unwrap();
    let o = strata(&["validate-gpu", "--data", dir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sparse.csv:2: unknown kind `ds_bogus`"), "{}", stderr(&o));
}

/// Yao Fu's long-context analysis of Yi-34B on an 80 GB A100 (shared/reference/long-context.md):
/// KV 1.0 and 12.3 GB at 4K and 50K, one request at 50K, decode of 250 tokens 8.5 and 9.8 s and
/// prefill at 4K 0.89 s, each within 10%; the kernel model is never faster than the peak analysis.
#[test]
fn capacity_reproduces_the_long_context_analysis() {
    let o = strata(&["capacity"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let row = |context: &str| -> Vec<f64> {
        let line = s.lines().find(|l| l.starts_with(&format!("| {context} |"))).unwrap_or_else(|| panic!("{s}"));
        line.split('|').map(str::trim).filter(|c| !c.is_empty()).map(|c| c.parse().unwrap()).collect()
    };
    let near = |got: f64, want: f64| (got / want - 1.0).abs() <= 0.10;
    let (short, long) = (row("4096"), row("50000"));
    assert!(near(short[1], 1.0) && near(long[1], 12.3), "{s}");
    assert_eq!(long[2], 1.0, "{s}");
    assert!(near(short[3], 0.89), "{s}");
    assert!(near(short[5], 8.5) && near(long[5], 9.8), "{s}");
    for r in [&short, &long] {
        assert!(r[4] >= r[3] && r[6] >= r[5], "kernels faster than peak: {s}");
    }
    for (args, expect) in [
        (&["capacity", "--model", "llama2-70b"][..], "llama2-70b: 138.0 GB of weights do not fit the 85.9 GB of a100"),
        (&["capacity", "--arch", "fusemax"][..], "fusemax: arch.gpu:"),
        (&["capacity", "--context", "0"][..], "--context"),
    ] {
        let o = strata(args);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
}

/// Tensor parallelism: Llama-3-70B does not fit one 80 GB H100 but serves from 2, 4 and 8, each
/// GPU holding its share of the weights; decode gets faster with more GPUs; the all-reduce column
/// is the ring formula (two per layer and step over NVLink 4); a count that does not divide the
/// heads, or an architecture without NVLink, exits 2.
#[test]
fn capacity_shards_a_70b_model_over_gpus() {
    let one = strata(&["capacity", "--model", "llama3-70b", "--arch", "h100"]);
    assert_eq!(one.status.code(), Some(2));
    assert!(stderr(&one).contains("do not fit the 85.9 GB of h100 (--gpus N shards them)"), "{}", stderr(&one));
    let mut decode = Vec::new();
    for n in [2u64, 4, 8] {
        let o = strata(&[
            "capacity",
            "--model",
            "llama3-70b",
            "--arch",
            "h100",
            "--gpus",
            &n.to_string(),
            "--context",
            "4096",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let s = stdout(&o);
        let weights: f64 = s.split("weights ").nth(1).unwrap().split(" GB").next().unwrap().parse().unwrap();
        assert!((weights * n as f64 / 141.1 - 1.0).abs() < 0.02, "{n}: {weights} GB per GPU");
        let row: Vec<f64> = s
            .lines()
            .find(|l| l.starts_with("| 4096 |"))
            .unwrap()
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse().unwrap())
            .collect();
        // 250 steps × 80 layers × 2 all-reduces of 8192 bf16 values: 2(n−1)/n of 16 KiB over
        // 450 GB/s plus 2(n−1) hops of 1 µs.
        let ring = 2.0 * (n as f64 - 1.0) / n as f64 * 16384.0 / 450e9 + 2.0 * (n as f64 - 1.0) * 1e-6;
        assert!((row[7] - 250.0 * 160.0 * ring).abs() < 1.5e-3, "{n}: {} vs {}", row[7], 250.0 * 160.0 * ring);
        decode.push(row[6]);
    }
    assert!(decode[0] > decode[1] && decode[1] > decode[2], "{decode:?}");
    for (args, expect) in [
        (
            &["capacity", "--model", "llama3-70b", "--arch", "h100", "--gpus", "3"][..],
            "--gpus 3 must divide the model's 64 heads",
        ),
        (&["capacity", "--model", "llama3-70b", "--arch", "a100", "--gpus", "2"][..], "--gpus 2 needs an NVLink"),
    ] {
        let o = strata(args);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
}

/// FlexGen's policy search from the command line: OPT-30B on the T4 with the released code's
/// overlap within 20% of Table 2 (7.32 tokens/s), weights mostly in CPU memory; bad cost models
/// and machines too small for the model exit 2 naming the constraint.
#[test]
fn offload_finds_flexgen_policies_and_names_what_does_not_fit() {
    let o = strata(&["offload", "--model", "opt-30b", "--overlap", "code"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let row: Vec<&str> = s.lines().find(|l| l.starts_with("| code |")).unwrap().split('|').map(str::trim).collect();
    let tokens: f64 = row[9].parse().unwrap();
    assert!((tokens / 7.32 - 1.0).abs() <= 0.2, "{s}");
    let weights_cpu: f64 = row[3].split('/').nth(1).unwrap().parse().unwrap();
    assert!(weights_cpu > 50.0, "{s}");
    let t4 = repo_text("mappings/presets/offload/flexgen-t4.toml");
    let small = file("small.toml", &t4.replace("gpu_memory = \"15 GiB\"", "gpu_memory = \"1 GiB\""));
    let o = strata(&["offload", "--model", "opt-30b", "--costs", small.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("opt-30b: no placement fits: GPU memory:"), "{}", stderr(&o));
    let bad = file("bad.toml", &t4.replace("dtoc = \"0.473 GiB/s\"", "dtoc = \"0 GiB/s\""));
    let o = strata(&["offload", "--costs", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("offload.dtoc: must be positive"), "{}", stderr(&o));
    let o = strata(&["offload", "--overlap", "fastest"]);
    assert_eq!(o.status.code(), Some(2));
    // The LP's policy in the system language: a system file on FlexGen's machine that the one
    // system model runs, the cache where the LP put it and attention where FlexGen computes it.
    let sys = file("flexgen-lp.toml", "");
    let o = strata(&[
        "offload",
        "--model",
        "opt-30b",
        "--overlap",
        "code",
        "--arch",
        "t4-host-ssd",
        "--system-out",
        sys.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&sys).unwrap();
    assert!(text.contains("fractions = [") && text.contains("unit = \"cpu\""), "{text}");
    let exp = file(
        "serve-lp.toml",
        &format!(
            "[experiment]\nname = \"lp\"\nkind = \"serving\"\noutput = \"{}\"\n[experiment.sweep]\nsystem = [\"{}\"]\narch = [\"t4-host-ssd\"]\nmodel = [\"opt-30b\"]\nbatch = [160]\nprompt = [512]\ngenerate = [32]\n",
            sys.with_file_name("lp-out").display(),
            sys.display()
        ),
    );
    let o = strata(&["run", exp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = std::fs::read_to_string(sys.with_file_name("lp-out").join("results.csv")).unwrap();
    assert!(results.lines().nth(1).unwrap().contains(",HostDRAM,"), "{results}");
    // The profile prices what it leaves out from the machine: on an architecture with no disk
    // there is nothing to place the cache on; with no profile the sheet alone prices the LP.
    let o = strata(&["offload", "--arch", "a100", "--system-out", sys.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("a100"), "{}", stderr(&o));
    let o = strata(&["offload", "--model", "opt-30b", "--overlap", "code", "--costs", "sheet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cost model `sheet` on t4-host-ssd"), "{}", stdout(&o));
}

/// `strata step`: one step of a system through the engine, its breakdown and a Chrome trace of
/// one layer with a track per device, link and memory; bad phases and systems exit 2.
#[test]
fn step_reports_a_system_step_and_its_trace() {
    let out = std::env::temp_dir().join(format!("strata-step-{}/t.json", std::process::id()));
    let o = strata(&[
        "step",
        "--arch",
        "cambricon-llm-s",
        "--system",
        "cambricon",
        "--model",
        "opt-6.7b",
        "--trace",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("GeMV Q+KN+VN (12288×4096, ×32)"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let tracks: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    for want in ["device: flash", "device: npu", "memory: LPDDR5X", "step"] {
        assert!(tracks.contains(&want), "{tracks:?}");
    }
    let o = strata(&["step", "--phase", "verify"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--phase: `verify`"), "{}", stderr(&o));
    let o = strata(&["step", "--system", "cambricon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("preset cambricon on a6000-csd"), "{}", stderr(&o));
}

/// The system model's request stream replayed on the device engine: FlexGen's SSD reads of one
/// OPT-13B decode layer, written by `strata step --request-trace` and run by `strata nand` on
/// the architecture's own drive. The trace holds the layer's share of the bytes the step reads
/// from the SSD, and the drive serves it in the time the step engine gave it; a memory the step
/// does not use, or a level with no drive, exits 2.
#[test]
fn step_request_trace_replays_on_the_drive() {
    let dir = std::env::temp_dir().join(format!("strata-step-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ssd.trace");
    let args = ["step", "--system", "flexgen-ssd", "--request-trace", path.to_str().unwrap()];
    let o = strata(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let after = |s: &str, key: &str| -> f64 {
        s.split(key).nth(1).unwrap().split_whitespace().next().unwrap().trim_matches(',').parse().unwrap()
    };
    // The step's SSD reads over its 40 layers and the LM head, and one layer's in the trace.
    let step_gb: f64 = after(&text, "    SSD");
    let busy: f64 = text.split("MB, ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let trace = std::fs::read_to_string(&path).unwrap();
    let read: u64 = trace
        .lines()
        .filter(|l| l.contains(" R "))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!((read as f64 * 40.0 / 1e9 / step_gb - 1.0).abs() < 0.002, "{read} B a layer against {step_gb} GB a step");
    assert!(text.contains("replay with `strata nand --drive a6000-csd:SSD"), "{text}");
    let o = strata(&["nand", "--drive", "a6000-csd:SSD", "--trace", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let replay = after(&stdout(&o), "simulated") / 1e3;
    assert!((replay / busy - 1.0).abs() < 0.05, "replayed in {replay} s against the step's {busy} s");
    for (args, expect) in [
        (
            vec!["step", "--system", "flexgen-ssd", "--request-trace", "x.trace", "--memory", "HBM"],
            "--memory: the step sends `HBM` no requests",
        ),
        (vec!["nand", "--drive", "a6000-csd:HBM"], "is no flash drive"),
        (vec!["nand", "--drive", "a6000-csd:Nowhere"], "has no level `Nowhere`"),
        (vec!["dram", "--standard", "a6000-csd:SSD"], "has no [dram] organisation"),
    ] {
        let o = strata(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The cycle-approximate DRAM channel from the command line, and its bad inputs: inconsistent
/// timings, a missing timing, several channels in one table, an event budget too small.
#[test]
fn dram_microbenchmarks_and_bad_timings() {
    let o = strata(&["dram", "--standard", "ddr4-3200", "--reads", "20000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let pct: f64 = s.split("GB/s  (").nth(1).unwrap().split('%').next().unwrap().parse().unwrap();
    assert!(pct >= 90.0, "{s}");
    let hbm2 = repo_text("arch/presets/dram/hbm2.toml");
    for (from, to, expect) in [
        ("tRAS = 34", "tRAS = 10", "dram.timing.tRAS: tRAS (10) must be at least tRCD (14)"),
        ("tFAW = 30, ", "", "dram.timing.tFAW: is required by the cycle-approximate engine"),
        ("channels = 1", "channels = 0", "dram.channels: must be positive"),
        (
            "channels = 1",
            "channels = 8\naddress_mapping = \"RoBaCo\"",
            "dram.address_mapping: `RoBaCo` does not cover the address: 8 channels need `Ch`",
        ),
        (
            "channels = 1",
            "channels = 1\naddress_mapping = \"RoBaCoCo\"",
            "dram.address_mapping: `RoBaCoCo` names `Co` twice",
        ),
    ] {
        assert!(hbm2.contains(from), "{from}");
        let f = file("d.toml", &hbm2.replace(from, to));
        let o = strata(&["dram", "--standard", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{expect}");
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    // An exceeded event budget is a run-time failure, not bad input.
    let o = strata(&["dram", "--max-events", "50"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("exceeded its budget of 50 events"), "{}", stderr(&o));
    // Channels under an address mapping: Ramulator's default (RoBaRaCoCh, one rank) walks a
    // row's columns in one bank and loses a third of the sequential bandwidth.
    let gbs = |args: &[&str]| -> f64 {
        let o = strata(args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).split("achieved").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let one = gbs(&["dram", "--standard", "ddr4-3200", "--reads", "40000"]);
    let four = gbs(&["dram", "--standard", "ddr4-3200", "--reads", "160000", "--channels", "4"]);
    assert!((four / one / 4.0 - 1.0).abs() < 0.02, "{one} vs {four}");
    let ramulator = gbs(&["dram", "--standard", "ddr4-3200", "--reads", "40000", "--mapping", "RoBaCo"]);
    assert!(ramulator < 0.7 * one, "{ramulator} vs {one}");
    let o = strata(&["dram", "--mapping", "RoXxCo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mapping: `RoXxCo`: `Xx` is not a field"), "{}", stderr(&o));
    // A second rank doubles DDR4's activation windows on random reads; it needs `Ra` in the
    // mapping and tRTRS in the timings.
    let random = |extra: &[&str]| {
        let mut a = vec!["dram", "--standard", "ddr4-3200", "--pattern", "random", "--reads", "20000"];
        a.extend_from_slice(extra);
        gbs(&a)
    };
    let (one_rank, two_ranks) = (random(&[]), random(&["--ranks", "2"]));
    assert!(two_ranks > 1.3 * one_rank, "{one_rank} vs {two_ranks}");
    for (args, expect) in [
        (vec!["dram", "--ranks", "2", "--mapping", "RoBaCo"], "2 ranks need `Ra`"),
        (vec!["dram", "--standard", "hbm2", "--ranks", "2"], "dram.timing.tRTRS"),
    ] {
        let o = strata(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    // Request latency: a closed loop at depth 1 waits for each read (the closed form at its
    // best), a load sweep writes its table, CSV and plot, a bad offered load is refused.
    let o = strata(&["dram", "--standard", "ddr4-3200", "--reads", "2000", "--queue-depth", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("closed loop at queue depth 1") && stdout(&o).contains("p99"), "{}", stdout(&o));
    let dir = std::env::temp_dir().join(format!("strata-dram-{}", std::process::id()));
    let o = strata(&["dram", "--pattern", "random", "--reads", "2000", "--load-sweep", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.join("dram-latency.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(dir.join("dram-latency.png").exists());
    std::fs::remove_dir_all(&dir).ok();
    // A trace: requests at their times, split into bursts; a bad line names file and line.
    let f = file("t.trace", "# time_ns R|W address bytes\n0 R 0x0 64\n10 R 0x100000 128\n20.5 W 4096 64\n");
    let o = strata(&["dram", "--standard", "ddr4-3200", "--trace", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 64-byte requests") && stdout(&o).contains("writes 1"), "{}", stdout(&o));
    let f = file("bad.trace", "0 R 0x0 64\n5 X 0 64\n");
    let o = strata(&["dram", "--trace", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.trace:2: the operation is R or W"), "{}", stderr(&o));
    let o = strata(&["dram", "--rate", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--rate"), "{}", stderr(&o));
}

/// The flash drive from the command line: LLM in a flash's 16 KB point on the M1 Max preset, a
/// sweep that writes its CSV and plot, and bad organisations (a page larger than the block, zero
/// channels, a zero channel rate) and budgets.
#[test]
fn nand_reads_sweeps_and_bad_organisations() {
    let o = strata(&["nand", "--drive", "m1-max-ssd", "--size", "16 KiB", "--queue-depth", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    let gbs: f64 = s.split("achieved").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((gbs / 1.25 - 1.0).abs() < 0.2, "{s}");
    let dir = std::env::temp_dir().join(format!("strata-nand-{}", std::process::id()));
    let o = strata(&["nand", "--sweep", "--requests", "300", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.join("nand-sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 9 * 7);
    assert!(dir.join("nand-sweep.png").exists() && dir.join("nand-sweep.svg").exists());
    // Latency against offered load: at 5% of what queue depth 32 sustains, the median read finds
    // the drive idle and takes what one read at a time takes.
    let args = ["nand", "--drive", "mqsim-mlc-shipped", "--size", "4KiB", "--requests", "2000"];
    let o = strata(&[&args[..], &["--load-sweep", "--out", dir.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(dir.join("nand-latency.csv")).unwrap();
    assert_eq!(csv.lines().count(), 21, "{csv}");
    assert!(csv.starts_with("share,offered_gb_per_s,achieved_gb_per_s,mean_us,p50_us"), "{csv}");
    assert!(dir.join("nand-latency.png").exists());
    let light_p50: f64 = csv.lines().nth(1).unwrap().split(',').nth(4).unwrap().parse().unwrap();
    let o = strata(&[&args[..], &["--queue-depth", "1"]].concat());
    let s = stdout(&o);
    let alone: f64 = s.split("latency mean ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((light_p50 / alone - 1.0).abs() < 0.01, "5% load p50 {light_p50} µs against one at a time {alone} µs");
    let mlc = repo_text("arch/presets/nand/mqsim-mlc.toml");
    for (from, to, expect) in [
        (
            "pages_per_block = 256",
            "block_bytes = \"4 KiB\"",
            "nand.block_bytes: a block of 4096 B must hold a whole number of 8192-byte pages",
        ),
        ("channels = 8", "channels = 0", "nand.channels: must be positive"),
        (
            "channel_bandwidth = \"333 MB/s\"",
            "channel_bandwidth = \"0 MB/s\"",
            "nand.channel_bandwidth: must be positive",
        ),
    ] {
        assert!(mlc.contains(from), "{from}");
        let f = file("n.toml", &mlc.replace(from, to));
        let o = strata(&["nand", "--drive", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{expect}");
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    let o = strata(&["nand", "--max-events", "50"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("exceeded its budget of 50 events"), "{}", stderr(&o));
    let o = strata(&["nand", "--drive", "no-such-drive"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A drive with a translation layer: random writes report write amplification and garbage
/// collection; bad FTL keys exit 2 naming them; a drive that runs out of free blocks exits 1.
#[test]
fn nand_translation_layer_runs_and_its_errors() {
    let shipped = repo_text("arch/presets/nand/mqsim-mlc-shipped.toml");
    for (from, to, expect) in [
        ("scheduling = \"chip\"", "scheduling = \"bank\"", "nand.scheduling: `bank` is not `die` or `chip`"),
        ("blocks_per_plane = 2048\n", "", "nand.ftl: a flash translation layer needs the drive's `blocks_per_plane`"),
        (
            "over_provisioning = 0.07",
            "over_provisioning = 1.5",
            "nand.ftl.over_provisioning: must be a share in [0, 0.9)",
        ),
        ("mapping_cache = \"2 MiB\"", "mapping_cache = \"1 KiB\"", "nand.ftl.mapping_cache: must hold at least one"),
        ("scheduling = \"chip\"", "t_read_by_page = []", "nand.t_read_by_page: give one to four read times"),
    ] {
        assert!(shipped.contains(from), "{from}");
        let f = file("ftl.toml", &shipped.replace(from, to));
        let o = strata(&["nand", "--drive", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{expect}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    let small = |op: f64| {
        format!(
            "[nand]\nchannels = 1\nchips_per_channel = 1\ndies_per_chip = 1\nplanes_per_die = 2\n\
             page_bytes = \"4 KiB\"\npages_per_block = 32\nblocks_per_plane = 64\nt_read = \"50 us\"\n\
             t_program = \"500 us\"\nt_erase = \"3 ms\"\nchannel_bandwidth = \"800 MB/s\"\n\
             [nand.ftl]\nover_provisioning = {op}\n"
        )
    };
    let args = |f: &std::path::Path| {
        ["nand", "--drive", f.to_str().unwrap(), "--pattern", "randwrite", "--size", "4KiB", "--requests", "6000"]
            .map(String::from)
    };
    let f = file("spare.toml", &small(0.2));
    let o = strata(&args(&f).each_ref().map(String::as_str));
    assert!(o.status.success(), "{}", stderr(&o));
    let wa: f64 =
        stdout(&o).split("write amplification").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(wa > 1.2, "{}", stdout(&o));
    let f = file("full.toml", &small(0.0));
    let o = strata(&args(&f).each_ref().map(String::as_str));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no free block on plane"), "{}", stderr(&o));
    // Write amplification against over-provisioning: never above the greedy curve (2% slack),
    // a CSV row per share and a plot; a drive without a translation layer has nothing to sweep.
    let out = f.with_file_name("wa");
    let o = strata(&["nand", "--drive", f.to_str().unwrap(), "--wa-sweep", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("nand-wa.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 7, "{csv}");
    for line in csv.lines().skip(1) {
        let v: Vec<&str> = line.split(',').collect();
        if let (Ok(wa), Ok(curve)) = (v[2].parse::<f64>(), v[3].parse::<f64>()) {
            assert!(wa > 1.0 && wa <= 1.02 * curve, "{line}");
        }
    }
    assert!(out.join("nand-wa.png").exists());
    // Open loop: a trace issues each request at its time (R reads, W programs), a rate spaces the
    // pattern's; a bad line is located, a non-positive rate refused.
    let trace = file("n.trace", "# time_ns R|W offset bytes\n0 R 0 4096\n1000 R 0x100000 16384\n2000 W 8192 8192\n");
    let o = strata(&["nand", "--trace", trace.to_str().unwrap()]);
    assert!(o.status.success() && stdout(&o).contains("3 requests from"), "{}", stderr(&o));
    let o = strata(&["nand", "--size", "4KiB", "--rate", "50000", "--requests", "2000"]);
    assert!(o.status.success() && stdout(&o).contains("open loop at 50.0k requests/s"), "{}", stderr(&o));
    let bad = file("bad.trace", "0 R 0 4096\n5 X 0 4096\n");
    for (args, expect) in [
        (vec!["nand", "--trace", bad.to_str().unwrap()], "bad.trace:2: the operation is R or W"),
        (vec!["nand", "--rate", "0"], "--rate: must be a positive number"),
    ] {
        let o = strata(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    let o = strata(&["nand", "--drive", "mqsim-mlc", "--wa-sweep"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no [nand.ftl] table"), "{}", stderr(&o));
}

/// Cambricon-LLM end to end: tokens/s of the paper's five reference points within 20%, the
/// speedup over FlexGen-SSD between 22× and 45× for OPT on L, and the tiling ablation; bad
/// tiles, a model larger than the flash, and zero channels exit 2.
#[test]
fn cambricon_llm_reproduction_and_bad_input() {
    let dir = std::env::temp_dir().join(format!("strata-cambricon-{}", std::process::id()));
    let o = strata(&["run", "cambricon-llm", "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The results since Cambricon-LLM moved onto the one system model, byte for byte.
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/golden/cambricon-llm.csv");
    assert_eq!(std::fs::read(dir.join("results.csv")).unwrap(), std::fs::read(golden).unwrap());
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let errors: Vec<f64> = summary
        .lines()
        .filter(|l| l.contains("| tokens/s |") && l.ends_with("% |"))
        .map(|l| l.rsplit('|').nth(1).unwrap().trim().trim_end_matches('%').parse().unwrap())
        .collect();
    assert_eq!(errors.len(), 5, "{summary}");
    assert!(errors.iter().all(|e| e.abs() < 20.0), "{errors:?}");
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[col("arch")] == "cambricon-llm-l" && f[col("model")].starts_with("opt") {
            let x: f64 = f[col("speedup_over_flexgen_ssd")].parse().unwrap();
            assert!((22.0..=45.0).contains(&x), "{line}");
        }
    }
    assert!(dir.join("plots/flash-throughput.png").exists());
    // Tokens/s of one `strata flash-compute` run.
    let tps = |args: &[&str]| -> f64 {
        let o = strata(&[&["flash-compute"], args].concat());
        stdout(&o).split("→ ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    let (full, no_split) = (tps(&[]), tps(&["--split", "1"]));
    assert!((1.3..=1.4).contains(&(full / no_split)), "{full} / {no_split}");
    // Slice Control at the paper's split: within 20% of its 1.6–1.8×.
    let slicing = tps(&["--split", "alpha"]) / tps(&["--split", "alpha", "--no-slicing"]);
    assert!((1.7 * 0.8..=1.7 * 1.2).contains(&slicing), "{slicing}");
    let o = strata(&["flash-compute", "--split", "most"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--split: `most`"), "{}", stderr(&o));

    let o = strata(&["flash-compute", "--tile", "256x1024"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not one 16384-weight page"), "{}", stderr(&o));
    let s = repo_text("arch/presets/cambricon-llm-s.toml");
    for (from, to, expect) in [
        ("capacity = \"1 TB\"", "capacity = \"1 GB\"", "system.placement.weights: 6.6 GB do not fit Flash"),
        ("channels = 8\n", "channels = 0\n", "channels: must be positive"),
    ] {
        assert!(s.contains(from), "{from}");
        let f = file("cam.toml", &s.replace(from, to));
        let o = strata(&["flash-compute", "--arch", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{expect}");
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
}

/// The paper's scaling claims (§VIII) on a small sweep: at 8 channels more chips per channel
/// stop paying (the weights cannot spread further), while at 4 chips per channel 1 → 64
/// channels scales steadily.
#[test]
fn cambricon_scaling_stops_where_the_paper_says() {
    let toml = "[experiment]\nname = \"scal\"\nkind = \"flash-compute\"\noutput = \"x\"\n[experiment.sweep]\n\
                arch = [\"cambricon-llm-s\"]\nmodel = [\"opt-6.7b\"]\nsystem = [\"cambricon\"]\n\
                channels = [1, 8, 64]\nchips_per_channel = [4, 64, 128]\n";
    let f = file("scal.toml", toml);
    let dir = std::env::temp_dir().join(format!("strata-scal-{}", std::process::id()));
    let o = strata(&["run", f.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let row = |start: &str| -> Vec<String> {
        let line = summary.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {summary}"));
        line.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()
    };
    assert_eq!(row("| 8 |")[1], "64", "{summary}");
    let speedup: f64 = row("| 4 | 1 → 64 |")[2].trim_end_matches('×').parse().unwrap();
    assert!(speedup > 32.0, "{summary}");
}

/// `strata trace`: a Chrome trace with a track per unit and memory and the tiles as slices, the
/// engine's time beside the analytical model's; bad options and budgets exit 2.
#[test]
fn trace_writes_a_chrome_trace_and_rejects_bad_input() {
    let out = std::env::temp_dir().join(format!("strata-trace-{}/t.json", std::process::id()));
    let dram = out.with_file_name("dram.txt");
    let o = strata(&[
        "trace",
        "--mapping",
        "fusemax-1pass",
        "--out",
        out.to_str().unwrap(),
        "--dram-trace",
        dram.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    // The DRAM trace carries every byte the engine moved through DRAM, and replays.
    let moved: u64 = text
        .lines()
        .find(|l| l.starts_with("| DRAM |"))
        .unwrap()
        .trim_end_matches(" |")
        .rsplit("| ")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let lines = std::fs::read_to_string(&dram).unwrap();
    let traced: u64 = lines
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(traced, moved);
    assert!(lines.lines().any(|l| l.contains(" W ")) && lines.lines().any(|l| l.contains(" R ")));
    let o = strata(&["dram", "--standard", "hbm2", "--channels", "16", "--trace", dram.to_str().unwrap()]);
    assert!(o.status.success() && stdout(&o).contains("arriving at the trace's times"), "{}", stderr(&o));
    let ratio: f64 = text.split("engine / analytical = ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!((1.0..=1.02).contains(&ratio), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    for want in ["unit: pe2d", "unit: pe1d", "memory: DRAM"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let slices = events.iter().filter(|e| e["ph"] == "X").count();
    assert!(slices > 1000, "{slices}");
    // Bad options are bad input (2); an exceeded event budget is a run-time failure (1).
    for (args, expect, code) in [
        (vec!["--memory", "fast"], "--memory: `fast` is not `ideal` or `real`", 2),
        (vec!["--buffering", "triple"], "--buffering: `triple`", 2),
        (vec!["--max-events", "10"], "exceeded its budget of 10 events", 1),
    ] {
        let mut a = vec!["trace", "--mapping", "gemm-fusemax", "--out", out.to_str().unwrap()];
        a.extend(args);
        let o = strata(&a);
        assert_eq!(o.status.code(), Some(code), "{expect}");
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
}

/// The directory of a fresh temporary file, for commands that write folders.
fn dir(name: &str) -> PathBuf {
    let d = file("unused", "").parent().unwrap().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `validate` runs exactly the checks `run` runs (defect 9: typo'd axes, duplicate systems and
/// repeated values passed `validate`), with the same message and exit code.
#[test]
fn validate_rejects_what_run_rejects() {
    let ok = "[experiment]\nname = \"x\"\nkind = \"attention-systems\"\n[experiment.sweep]\nmodel = [\"bert\"]\nseq = [1024]\nbatch = [8]\n[[experiment.systems]]\nname = \"FuseMax\"\narch = \"fusemax\"\nattention = \"fusemax\"\n";
    for (text, expect) in [
        (ok.replace("batch = [8]", "batch = [8]\nseqq = [2]"), "experiment.sweep.seqq: not an axis"),
        (ok.replace("seq = [1024]", "seq = [1024, 1024]"), "experiment.sweep.seq[1]: 1024 repeats value [0]"),
        (
            ok.to_string() + "[[experiment.systems]]\nname = \"FuseMax\"\narch = \"flat\"\nattention = \"flat\"\n",
            "are both named `FuseMax`",
        ),
        (ok.replace("batch = [8]", "batch = [0]"), "experiment.sweep.batch[0]: 0 is not a positive whole number"),
        (
            ok.replace("[experiment.sweep]", "filter = \"system < 3\"\n[experiment.sweep]"),
            "experiment.filter: cannot order",
        ),
    ] {
        let path = file("e.toml", &text);
        let p = path.to_str().unwrap();
        let out = path.parent().unwrap().join("o");
        let (v, r) = (strata(&["validate", p]), strata(&["run", p, "--out", out.to_str().unwrap()]));
        assert_eq!((v.status.code(), r.status.code()), (Some(2), Some(2)), "{expect}");
        assert!(stderr(&v).contains(expect) && stderr(&v).contains("e.toml"), "{}", stderr(&v));
        assert_eq!(stderr(&v), stderr(&r));
    }
}

/// A run killed with SIGKILL at many moments — while points compute, while the journal is
/// appended, while results are written — and rerun each time ends with files byte-identical to
/// an uninterrupted run's. The kill times come from a fixed-seed generator spread over one and
/// a half uninterrupted run times.
#[test]
fn kills_at_random_moments_resume_to_identical_files() {
    let run = |out: &std::path::Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
        c.args(["run", "default", "--jobs", "2", "--quiet", "--out", out.to_str().unwrap()])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let whole = dir("kill-whole");
    let started = std::time::Instant::now();
    assert!(run(&whole).status().unwrap().success());
    let full = started.elapsed().as_micros() as u64;
    let files = ["results.csv", "results.jsonl", "summary.md", "points.jsonl", "manifest.json"];
    let read = |d: &std::path::Path| files.map(|f| std::fs::read(d.join(f)).unwrap_or_default());
    let killed = dir("kill-resumed");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    while kills < 24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut child = run(&killed).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_micros(x % (full * 3 / 2 + 1)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        } else {
            // It finished before the kill: start over, so that the next kill finds work to cut.
            assert_eq!(read(&killed), read(&whole));
            std::fs::remove_dir_all(&killed).unwrap();
        }
        child.wait().unwrap();
    }
    assert!(run(&killed).status().unwrap().success());
    assert_eq!(read(&killed), read(&whole));
}

/// `strata slurm` writes an array script and a merge script; run by hand with each array task
/// id (as Slurm would run them), they leave the files of `strata run`, byte for byte.
#[test]
fn slurm_scripts_run_shards_and_merge_to_the_whole_run() {
    let d = dir("slurm");
    let whole = d.join("whole");
    assert!(strata(&["run", "flash-io", "--out", whole.to_str().unwrap()]).status.success());
    let out = d.join("array");
    let o = strata(&["slurm", "flash-io", "--array", "3", "--out", out.to_str().unwrap(), "--sbatch=--time=10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let array = std::fs::read_to_string(out.join("strata-array.sbatch")).unwrap();
    assert!(array.contains("#SBATCH --array=0-2") && array.contains("#SBATCH --time=10"), "{array}");
    for task in 0..3 {
        let s = Command::new("bash")
            .arg(out.join("strata-array.sbatch"))
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .status();
        assert!(s.unwrap().success());
    }
    assert!(Command::new("bash").arg(out.join("strata-merge.sbatch")).status().unwrap().success());
    for f in ["results.csv", "results.jsonl", "summary.md", "points.jsonl"] {
        assert_eq!(std::fs::read(out.join(f)).unwrap(), std::fs::read(whole.join(f)).unwrap(), "{f}");
    }
    let o = strata(&["run", "flash-io", "--shard", "4/4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--shard"), "{}", stderr(&o));
}

/// The reproducers of the no-wrong-answers review: extreme numbers on the command line, sizes
/// whose counts would wrap, searches that tried every integer and mappings that do not fit all
/// exit 2 with the flag, key or Einsum named, within seconds, and never panic.
#[test]
fn extreme_inputs_are_located_errors_not_panics_hangs_or_wraps() {
    let huge = "18446744073709551615";
    for (args, expect) in [
        (vec!["bench", "--seconds", "NaN"], "--seconds"),
        (vec!["bench", "--seconds", "inf"], "--seconds"),
        (vec!["bench", "--seconds", "1e300"], "--seconds"),
        (vec!["dram", "--reads", huge], "--reads"),
        (vec!["dram", "--reads", "0"], "--reads"),
        (vec!["nand", "--requests", huge], "--requests"),
        (vec!["capacity", "--context", huge], "--context"),
        (vec!["capacity", "--batch", huge], "--batch"),
        (vec!["capacity", "--generate", huge], "--generate"),
        (vec!["trace", "--mapping", "fusemax-1pass", "--seq", "4294967296"], "more than 2^58"),
        (vec!["workload", "show", "bert", "--seq", "16777216", "--batch", "64"], "more than 2^58"),
        (vec!["workload", "show", "bert", "--seq", huge], "--seq"),
    ] {
        let o = strata(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    // A GEMM of 2^32 per rank: refused with the Einsum named, not 0 cycles.
    let gemm = file(
        "gemm.toml",
        "[cascade]\nname = \"g\"\nranks = { m = 4294967296, n = 4294967296, k = 4294967296 }\n[[cascade.einsums]]\nexpr = \"Z[m,n] = A[k,m] * B[k,n]\"\n",
    );
    let o = strata(&["workload", "show", gemm.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cascade.einsums[0]") && stderr(&o).contains("Z"), "{}", stderr(&o));
    // Sizes near 2^62 in a sweep and in a model file: refused before anything runs.
    let exp = "[experiment]\nname = \"x\"\nkind = \"attention-systems\"\n[experiment.sweep]\nmodel = [\"bert\"]\nseq = [4611686018427387904]\nbatch = [64]\n[[experiment.systems]]\nname = \"FuseMax\"\narch = \"fusemax\"\nattention = \"fusemax\"\n";
    let e = file("e.toml", exp);
    let o = strata(&["validate", e.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let m = file(
        "m.toml",
        "[model]\nname = \"m\"\nlayers = 4611686018427387904\nd_model = 64\nheads = 4\nffn_dim = 128\nactivation = \"gelu\"\nvocab = 100\n",
    );
    let o = strata(&["workload", "show", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("model.layers: must be at most 4096"), "{}", stderr(&o));
    let hf = file(
        "config.json",
        r#"{"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 4611686018427387904, "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32000, "hidden_act": "silu"}"#,
    );
    let o = strata(&["workload", "show", hf.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("layers"), "{}", stderr(&o));
    // 2×10^7 points: refused by run and validate alike unless --max-points allows them.
    let big = exp
        .replace(
            "seq = [4611686018427387904]",
            &format!("seq = [{}]", (1..=4472).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")),
        )
        .replace(
            "batch = [64]",
            &format!("batch = [{}]", (1..=4472).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")),
        );
    let big = file("big.toml", &big);
    for cmd in ["validate", "run"] {
        let o = strata(&[cmd, big.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains("19998784 points, more than 1000000"), "{cmd}: {}", stderr(&o));
    }
    // A mapping that does not fit: an error naming the level and the bytes, unless asked for as data.
    let arch = repo_text("arch/presets/fusemax.toml").replace("\"16 MiB\"", "\"64 KiB\"");
    let small = file("small.toml", &arch);
    let args = ["eval", "--mapping", "fusemax-1pass", "--arch", small.to_str().unwrap()];
    let o = strata(&args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not fit") && stderr(&o).contains("GlobalBuffer") && stderr(&o).contains("65536 B"),
        "{}",
        stderr(&o)
    );
    let o = strata(&[&args[..], &["--allow-violations"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("violations:"), "{}", stdout(&o));
}

/// Every numeric flag of every command with extreme values: each run ends with exit 0, 1 or 2
/// and never panics; rejected values name their flag.
#[test]
fn every_numeric_flag_takes_extremes_without_panicking() {
    let flags: [(&[&str], &str); 19] = [
        (&["bench"], "--seconds"),
        (&["capacity"], "--context"),
        (&["capacity"], "--generate"),
        (&["capacity"], "--batch"),
        (&["offload"], "--prompt"),
        (&["offload"], "--generate"),
        (&["dram"], "--reads"),
        (&["dram"], "--window"),
        (&["dram"], "--max-events"),
        (&["nand"], "--queue-depth"),
        (&["nand"], "--requests"),
        (&["nand"], "--max-events"),
        (&["flash-compute"], "--context"),
        (&["flash-compute"], "--slices"),
        (&["flash-compute"], "--max-events"),
        (&["trace", "--mapping", "gemm-fusemax"], "--max-events"),
        (&["workload", "show", "llama2-7b"], "--seq"),
        (&["workload", "show", "llama2-7b"], "--batch"),
        (&["run", "flash-io", "--out", "unused-out"], "--max-points"),
    ];
    for (cmd, flag) in flags {
        for value in ["-1", "0", "NaN", "inf", "1e300", "18446744073709551616", "18446744073709551615", "abc"] {
            let args: Vec<&str> = cmd.iter().copied().chain([flag, value]).collect();
            let o = strata(&args);
            let code = o.status.code();
            assert!(matches!(code, Some(0..=2)), "{args:?}: {code:?} {}", stderr(&o));
            assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
            if code == Some(2) {
                assert!(stderr(&o).contains(flag) || stderr(&o).contains("--"), "{args:?}: {}", stderr(&o));
            }
        }
    }
}

/// `strata map` writes a mapping that `strata eval` reproduces exactly, and names the Einsum
/// that no unit can execute, the Einsum that does not exist and the machine where nothing fits.
#[test]
fn map_writes_a_mapping_that_eval_reproduces() {
    let d = dir("map");
    let out = d.join("m.toml");
    let o = strata(&[
        "map",
        "--arch",
        "fusemax",
        "--workload",
        "attention-3pass",
        "--objective",
        "latency",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mapped = stdout(&o);
    assert!(mapped.contains("mapped 6 Einsum(s) of attention-3pass on fusemax"), "{mapped}");
    let e = strata(&["eval", "--arch", "fusemax", "--workload", "attention-3pass", "--mapping", out.to_str().unwrap()]);
    assert!(e.status.success(), "{}", stderr(&e));
    let report = |s: &str| s[s.find("mapping attention-3pass-").unwrap()..].to_string();
    assert_eq!(report(&mapped), report(&stdout(&e)));
    let o = strata(&["map", "--arch", "fusemax", "--workload", "gemm", "--out", out.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(j["search"][0]["evaluated"].as_u64().unwrap() > 0 && j["search"][0]["mapspace"].as_u64().unwrap() > 0);
    // A machine whose only unit multiplies: attention's max has nowhere to run.
    let arch = repo_text("arch/presets/fusemax.toml");
    let mac_only = arch.split("[[arch.compute]]").next().unwrap().to_string()
        + "[[arch.compute]]\nname = \"mults\"\nlevel = \"RF2D\"\nrows = 256\ncols = 256\nops = { mac = { energy = \"1 pJ\" } }\n";
    let a = file("mac-only.toml", &mac_only);
    let o = strata(&[
        "map",
        "--arch",
        a.to_str().unwrap(),
        "--workload",
        "attention-3pass",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Einsum GM of attention-3pass: no unit of fusemax has max"), "{}", stderr(&o));
    let o =
        strata(&["map", "--arch", "fusemax", "--workload", "gemm", "--einsum", "QK", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--einsum: `QK` is not an Einsum of gemm"), "{}", stderr(&o));
    // A recurrence (1-pass attention's running max through m1) needs a fused group: the whole
    // cascade is mapped fused; one of its Einsums alone cannot be, and that is said (exit 2).
    let o = strata(&["map", "--arch", "fusemax", "--workload", "attention-1pass", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("fusion search:") && stdout(&o).contains("chosen"), "{}", stdout(&o));
    let o_s = out.to_str().unwrap();
    let o = strata(&["map", "--arch", "fusemax", "--workload", "attention-1pass", "--einsum", "RM", "--out", o_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--einsum RM: it steps through `m1`"), "{}", stderr(&o));
    // Some Einsums of a cascade: their searches, no evaluation of a partial mapping.
    let o = strata(&["map", "--arch", "fusemax", "--workload", "attention-3pass", "--einsum", "QK", "--out", o_s]);
    assert!(o.status.success() && stdout(&o).contains("not evaluated"), "{}", stderr(&o));
    let tiny = file("tiny.toml", &arch.replace("\"32 B\"", "\"2 B\"").replace("\"64 B\"", "\"2 B\""));
    let o = strata(&["map", "--arch", tiny.to_str().unwrap(), "--workload", "gemm", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("Einsum Z of gemm: no mapping fits fusemax"), "{}", stderr(&o));
}

/// `strata map --constraints`: fixed factors, order and keep lists hold in the mapping written;
/// contradictory or impossible constraints exit 2 naming the constraint (or the Einsum).
#[test]
fn map_honours_constraints_and_rejects_contradictions() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (arch, gemm) = (
        format!("{root}/experiments/examples/tpu-v4i-like.toml"),
        format!("{root}/experiments/examples/gemm-1024-int8.toml"),
    );
    let out = std::env::temp_dir().join(format!("strata-constrained-{}.toml", std::process::id()));
    let map = |constraints: &str| {
        let c = file(&format!("c{}.toml", constraints.len()), constraints);
        strata(&[
            "map",
            "--arch",
            &arch,
            "--workload",
            &gemm,
            "--constraints",
            c.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = map(
        "[[constraints]]\neinsum = \"Z\"\nlevel = \"CMEM\"\nfactors = { k = 16 }\norder = [\"k\", \"m\"]\nkeep = [\"A\", \"B\", \"Z\"]\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mapping = std::fs::read_to_string(&out).unwrap();
    assert!(mapping.contains("loops = [\"k=16\""), "{mapping}");
    for (text, expect) in [
        (
            "[[constraints]]\nlevel = \"CMEM\"\nfactors = { k = 16 }\n[[constraints]]\neinsum = \"Z\"\nlevel = \"CMEM\"\nfactors = { k = 32 }\n",
            "constraints[0] and constraints[1] contradict each other: rank `k` at CMEM is 16 in one and 32 in the other",
        ),
        (
            "[[constraints]]\nlevel = \"CMEM\"\nfactors = { k = 3 }\n",
            "constraints[0].factors.k: 3 does not divide the rank's size 1024",
        ),
        (
            "[[constraints]]\nlevel = \"HBM\"\nfactors = { k = 64 }\n[[constraints]]\nlevel = \"CMEM\"\nfactors = { k = 32 }\n",
            "constraints[0] and constraints[1] contradict each other: their factors of rank `k` in Einsum Z multiply to 2048",
        ),
        (
            "[[constraints]]\nlevel = \"HBM\"\nkeep = [\"A\"]\n",
            "constraints[0].keep: `Z` comes from or goes to outside the cascade",
        ),
        ("[[constraints]]\nlevel = \"L2\"\n", "constraints[0].level: `L2` is not a level of tpu-v4i-like"),
        ("[[constraints]]\nlevel = \"CMEM\"\norder = [\"k\", \"k\"]\n", "constraints[0].order: `k` is listed twice"),
        ("[[constraints]]\nlevel = \"Regs\"\nfactors = { k = 2 }\n", "Einsum Z of gemm-1024-int8: no mapping fits"),
    ] {
        let o = map(text);
        assert_eq!(o.status.code(), Some(2), "{text}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{text}: {}", stderr(&o));
    }
}
