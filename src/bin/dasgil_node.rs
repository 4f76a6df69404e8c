//! The DASGIL ROS 2 node (`ros2 launch dasgil localize.launch.py`). See `dasgil::node`.

#[cfg(feature = "ros")]
#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(err) = dasgil::node::run().await {
        eprintln!("dasgil_node: {}", dasgil::report::error_report(&err));
        std::process::exit(1);
    }
}

#[cfg(not(feature = "ros"))]
fn main() {
    eprintln!("dasgil_node: this build has no ROS 2 support (cargo feature `ros` is off); rebuild with default features");
    std::process::exit(2);
}
