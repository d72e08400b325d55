fn main() -> std::process::ExitCode {
    mcp_bridge_shim::main()
}
