//! `larder checkout --format mp-spdz`: checks out at this engine's node and writes MP-SPDZ's
//! preprocessing files or pipes. The format itself is the library's `interop::mp_spdz`; this
//! is the orchestration (calls to the node, files and pipes at once).

use anyhow::{Context, Result};
use larder::client::EngineClient;
use larder::interop::mp_spdz::{
    export_file, export_to_pipe, make_pipe, open_pipe, prepare_dir, CheckoutPlan, ExportError,
    Exported, Layout,
};
use larder::material::ShareReader;

/// Checks out `plan` and writes it for MP-SPDZ: every part concurrently, each into its file
/// (replaced once complete) or its pipe (opened first, so nothing is reserved for a thread
/// that never reads). `on_done` hears of each part as it completes.
///
/// # Errors
/// What MP-SPDZ cannot read is refused before anything is reserved; then API, stream and IO
/// errors.
pub(crate) async fn checkout(
    client: &EngineClient,
    plan: &CheckoutPlan,
    on_done: impl Fn(&Exported) + Sync,
) -> Result<Vec<Exported>> {
    let health = client.health().await?;
    let layout = Layout::new(plan.pool, health.parties, health.party, plan.montgomery)?;
    let parts = plan.parts()?;
    for (_, thread, _) in &parts {
        layout.check_thread(*thread)?;
    }
    let dir = prepare_dir(&plan.player_data, &layout)?;
    let one = |(id, thread, count): (String, Option<u32>, u64)| {
        let (layout, dir, on_done) = (&layout, &dir, &on_done);
        async move {
            let path = dir.join(layout.file_name(thread));
            let pipe = if plan.pipes {
                make_pipe(&path)?;
                let p = path.clone();
                Some(blocking(move || open_pipe(&p)).await?)
            } else {
                None
            };
            client
                .checkout(&id, plan.pool, count)
                .await
                .with_context(|| format!("checking out {id:?}"))?;
            let reader = client.download_reader(&id).await?;
            let (layout, player_data) = (layout.clone(), plan.player_data.clone());
            let done = blocking(move || {
                let shares = ShareReader::new(reader)?;
                if Layout::of_stream(&shares.header, layout.montgomery)? != layout {
                    return Err(ExportError::Conflict(format!(
                        "checkout {id:?} holds {} at party {}, not what was asked",
                        shares.header.pool, shares.header.party
                    )));
                }
                match pipe {
                    Some(file) => export_to_pipe(shares, &layout, file, path),
                    None => export_file(shares, &player_data, thread, layout.montgomery),
                }
            })
            .await?;
            on_done(&done);
            Ok::<_, anyhow::Error>(done)
        }
    };
    futures_util::future::join_all(parts.into_iter().map(one))
        .await
        .into_iter()
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .context("the export task failed")??)
}
