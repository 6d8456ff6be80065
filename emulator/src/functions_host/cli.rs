//! `azure-emulator functions-host --app-root DIR [--port P] -- <handler command…>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{FunctionsHost, HostError, HostOptions, Trigger};

#[derive(Debug, Clone, clap::Args)]
pub struct FunctionsHostArgs {
    /// The function app root (host.json; function folders beside it or under function-app/).
    #[arg(long)]
    pub app_root: PathBuf,
    /// Port of the host endpoint (0 = a free one).
    #[arg(long, default_value_t = 7071)]
    pub port: u16,
    /// App settings in local.settings.json form (default: APP_ROOT/local.settings.json when present).
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Extra app settings, KEY=VALUE (repeatable).
    #[arg(long = "setting", value_parser = parse_key_value)]
    pub extra_settings: Vec<(String, String)>,
    /// Do not fire timers on their schedule (the admin API still runs them).
    #[arg(long)]
    pub no_timers: bool,
    /// The handler command; overrides host.json's executable and arguments.
    #[arg(last = true)]
    pub handler: Vec<String>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))
}

impl FunctionsHostArgs {
    pub fn host_options(&self) -> Result<HostOptions, HostError> {
        let mut options = HostOptions::new(&self.app_root);
        options.port = self.port;
        options.handler_command = (!self.handler.is_empty()).then(|| self.handler.clone());
        options.run_timers = !self.no_timers;
        let mut settings = BTreeMap::new();
        if let Some(path) = &self.settings {
            settings = super::config::parse_local_settings(&super::config::read_json(path)?)?;
        }
        settings.extend(self.extra_settings.iter().cloned());
        options.settings = settings;
        Ok(options)
    }
}

/// Runs the host until Ctrl-C or until it gives up on the handler.
pub async fn run(args: FunctionsHostArgs) -> Result<(), HostError> {
    let host = FunctionsHost::start(args.host_options()?).await?;
    println!("Functions host simulator listening on {}", host.base_url());
    for function in host.functions() {
        match &function.trigger {
            Trigger::EventGrid => println!(
                "  {}: eventGridTrigger  {}",
                function.name,
                host.eventgrid_webhook_url(&function.name)
            ),
            Trigger::Timer { schedule, .. } => println!(
                "  {}: timerTrigger ({schedule})  run now: curl -X POST {}/admin/functions/{} -d '{{}}'",
                function.name,
                host.base_url(),
                function.name
            ),
        }
    }
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        reason = host.wait_stopped() => Err(HostError::Stopped(reason)),
    };
    host.shutdown().await;
    result
}
