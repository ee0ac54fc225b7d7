//! The `figway` binary: everything lives in the library; see `figway::cli`.

fn main() -> std::process::ExitCode {
    figway::cli::main()
}
