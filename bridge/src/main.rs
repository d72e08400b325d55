fn main() -> std::process::ExitCode {
    mcp_bridge::cli::main()
}
