//! The probed truth table of a lab, in the same shape as the engine's.

use weir_engine::matrix::Verdicts;
use weir_model::PortKey;

use crate::plan::LabState;
use crate::probe::{self, Job, Outcome, ProbeOptions};

/// Probes every ordered pod pair (self included) on every probe. Returns the verdicts and
/// the problems met (probes that could not observe a verdict, answers from the wrong pod).
pub fn probe_matrix(
    state: &LabState,
    probes: &[PortKey],
    options: ProbeOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> std::io::Result<(Verdicts, Vec<String>)> {
    let n = state.pods.len();
    let mut jobs = Vec::with_capacity(n * n * probes.len());
    for src in 0..n {
        for dst in 0..n {
            for p in probes {
                jobs.push(Job {
                    src,
                    dst,
                    protocol: p.protocol,
                    port: p.port,
                });
            }
        }
    }
    let outcomes = probe::run(state, &jobs, options, progress)?;
    let mut problems = Vec::new();
    let cells = jobs
        .iter()
        .zip(&outcomes)
        .map(|(job, outcome)| {
            let (src, dst) = (&state.pods[job.src].id, &state.pods[job.dst].id);
            match outcome {
                Outcome::Reached(Some(name)) if name != dst => {
                    problems.push(format!(
                        "{src} -> {dst} {}/{}: answered by {name:?}",
                        job.protocol, job.port
                    ));
                    None
                }
                Outcome::Failed(why) => {
                    problems.push(format!(
                        "{src} -> {dst} {}/{}: {why}",
                        job.protocol, job.port
                    ));
                    None
                }
                o => o.allowed(),
            }
        })
        .collect();
    Ok((
        Verdicts {
            endpoints: state.pods.iter().map(|p| p.id.clone()).collect(),
            probes: probes.to_vec(),
            cells,
        },
        problems,
    ))
}
