//! `strata`: the command-line front end, a thin layer over the `strata` library.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
