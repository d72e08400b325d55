fn main() -> std::process::ExitCode {
    mcp_cred_agent::cli::main()
}
