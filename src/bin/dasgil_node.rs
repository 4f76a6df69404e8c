//! The DASGIL ROS 2 node (`ros2 launch dasgil localize.launch.py`). See `dasgil::node`.

#[cfg(feature = "ros")]
#[tokio::main]
async fn main() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    // Log lines go through ROS logging (stdout/stderr the ROS way, /rosout, `--log-level`);
    // this crate's events down to debug are handed over and rcutils applies the level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("dasgil=debug,warn"));
    tracing_subscriber::registry()
        .with(dasgil::node::log::RosLog.with_filter(filter))
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
