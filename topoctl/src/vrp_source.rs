//! Where `topoctl check` and `topoctl plan` get their VRPs for guard G5: an rpki-client JSON
//! file (`--vrps FILE`) or one reset query to an RTR cache (`--rtr HOST:PORT`, repeatable: the
//! caches are tried in the order given, the first complete answer wins). Owns the two flags and
//! the loading; judging routes is topology's (G5), the RTR protocol is topologyd-rpki's.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use topologyd_rpki::VrpSet;
use topologyd_rpki::rtr::fetch_once;

/// How long one cache may take to send its complete set (connect to End of Data).
pub const RTR_FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The VRP flags shared by `check` and `plan`.
#[derive(Args, Debug, Clone, Default)]
pub struct VrpArguments {
    /// Guard G5: validate the origin of every announced route (RFC 6811) against these VRPs
    /// (rpki-client JSON); a route made RPKI-invalid is refused (exit 3).
    #[arg(long, value_name = "FILE", conflicts_with = "rtr")]
    pub vrps: Option<PathBuf>,
    /// Guard G5 with the VRPs of an RTR cache (RFC 8210; e.g. StayRTR or Routinator). Repeat
    /// for fall-back caches, tried in order.
    #[arg(long, value_name = "HOST:PORT")]
    pub rtr: Vec<String>,
}

impl VrpArguments {
    /// The VRPs the flags name, or `None` when neither is given. Errors say which file or
    /// which caches and why.
    pub fn load(&self) -> Result<Option<VrpSet>, String> {
        if let Some(path) = &self.vrps {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("reading the VRPs {}: {error}", path.display()))?;
            return VrpSet::from_rpki_client_json(&path.display().to_string(), &text)
                .map(Some)
                .map_err(|error| error.to_string());
        }
        if self.rtr.is_empty() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("starting the RTR client: {error}"))?;
        let (vrps, cache) = runtime
            .block_on(fetch_once(&self.rtr, RTR_FETCH_TIMEOUT))
            .map_err(|error| {
                format!("{error} (check the address, or give the VRPs with --vrps FILE)")
            })?;
        eprintln!("rpki: {} VRPs from the RTR cache {cache}", vrps.len());
        Ok(Some(vrps))
    }
}
