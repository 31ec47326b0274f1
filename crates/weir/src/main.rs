fn main() -> std::process::ExitCode {
    weir::run()
}
