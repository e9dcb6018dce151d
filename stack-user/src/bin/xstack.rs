//! The `xstack` command line (see [`xstack::cli`]).

fn main() -> std::process::ExitCode {
    xstack::cli::main()
}
