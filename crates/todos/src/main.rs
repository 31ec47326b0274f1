//! `todos`: serves the API on `LISTEN` (default `[::]:80`, both families) with Redis at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "[::]:80".into());
    let app = todos::App::new(&url)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("todos: listening on {listen}, Redis at {url}");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
