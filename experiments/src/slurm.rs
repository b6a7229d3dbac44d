//! `strata slurm`: an experiment as a Slurm job array, one shard per array task, and a merge job
//! that runs once every task has succeeded. Slurm does the scheduling; Strata only writes the
//! scripts (and, with `--submit`, hands them to `sbatch`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{CliError, CliResult};

pub struct Args {
    pub experiment: String,
    /// Array tasks (shards).
    pub array: u64,
    /// Where the scripts, the shards' folders, the logs and the merged results go.
    pub out: PathBuf,
    pub submit: bool,
    /// Extra `#SBATCH` lines, e.g. `--partition=cpu`.
    pub sbatch: Vec<String>,
}

fn absolute(p: &Path) -> CliResult<PathBuf> {
    std::path::absolute(p).map_err(|e| CliError::input(format!("{}: {e}", p.display())))
}

/// Quotes a word for a POSIX shell.
fn sh(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Writes the two scripts; with `submit`, submits them and reports the job ids.
pub fn run(a: &Args) -> CliResult<String> {
    if a.array == 0 {
        return Err(CliError::input("--array: at least one task"));
    }
    let x = crate::experiment::load(&a.experiment)?;
    // A file is named by its absolute path, since the tasks may start elsewhere.
    let experiment = if crate::experiment::PRESETS.iter().any(|p| p.0 == a.experiment) {
        a.experiment.clone()
    } else {
        absolute(Path::new(&a.experiment))?.display().to_string()
    };
    let bin = std::env::current_exe().map_err(|e| CliError::runtime(format!("the strata binary's path: {e}")))?;
    let out = absolute(&a.out)?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| crate::store::write_err(&logs, e))?;
    let n = a.array;
    let name = x.spec.name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let extra: String = a.sbatch.iter().map(|l| format!("#SBATCH {l}\n")).collect();
    let shard_dir = |i: &str| out.join("shards").join(format!("shard-{i}"));
    let array = format!(
        "#!/bin/bash\n# Strata: experiment `{}` as {n} shards (written by `strata slurm`).\n\
         #SBATCH --job-name=strata-{name}\n#SBATCH --array=0-{}\n#SBATCH --output={}/shard-%a.log\n{extra}\
         set -euo pipefail\n\
         exec {} run {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --out {}\"${{SLURM_ARRAY_TASK_ID}}\" --quiet\n",
        x.spec.name,
        n - 1,
        logs.display(),
        sh(&bin.display().to_string()),
        sh(&experiment),
        sh(&out.join("shards").join("shard-").display().to_string()),
    );
    let dirs: Vec<String> = (0..n).map(|i| sh(&shard_dir(&i.to_string()).display().to_string())).collect();
    let merge = format!(
        "#!/bin/bash\n# Strata: merges the {n} shards of `{}` once all have finished.\n\
         #SBATCH --job-name=strata-{name}-merge\n#SBATCH --output={}/merge.log\n{extra}\
         set -euo pipefail\nexec {} merge {} --out {}\n",
        x.spec.name,
        logs.display(),
        sh(&bin.display().to_string()),
        dirs.join(" "),
        sh(&out.display().to_string()),
    );
    let array_path = out.join("strata-array.sbatch");
    let merge_path = out.join("strata-merge.sbatch");
    crate::store::replace(&out, "strata-array.sbatch", array.as_bytes())?;
    crate::store::replace(&out, "strata-merge.sbatch", merge.as_bytes())?;
    let mut msg = format!(
        "{} points in {n} shards\nscripts: {}, {}\nresults (after the merge job): {}/results.csv\n",
        x.sweep.len(),
        array_path.display(),
        merge_path.display(),
        out.display()
    );
    if !a.submit {
        return Ok(msg
            + &format!(
                "submit: sbatch {0} then sbatch --dependency=afterok:JOB {1}\n",
                array_path.display(),
                merge_path.display()
            ));
    }
    let sbatch = |args: &[&str]| -> CliResult<String> {
        let o = Command::new("sbatch").args(args).output().map_err(|e| {
            CliError::runtime(format!(
                "sbatch: {e} (is Slurm installed? scripts/slurm-local.sh starts a one-node cluster)"
            ))
        })?;
        if !o.status.success() {
            return Err(CliError::runtime(format!(
                "sbatch {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        let id = String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() {
            return Err(CliError::runtime(format!("sbatch {}: printed no job id", args.join(" "))));
        }
        Ok(id)
    };
    let array_job = sbatch(&["--parsable", &array_path.display().to_string()])?;
    let merge_job =
        sbatch(&["--parsable", &format!("--dependency=afterok:{array_job}"), &merge_path.display().to_string()])?;
    msg += &format!("submitted: array job {array_job}, merge job {merge_job}\n");
    Ok(msg)
}
