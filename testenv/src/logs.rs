//! Where the logs of a run go: `make test` sets `CTWA_TEST_LOG_DIR` and collects every log
//! there (trace level); without it nothing is written.

use std::path::PathBuf;
use std::process::Stdio;

/// Where `make test` collects every log of the run (trace level), if it does.
pub fn log_dir() -> Option<PathBuf> {
    std::env::var_os("CTWA_TEST_LOG_DIR").map(PathBuf::from)
}

/// In-process operators (and the fakes) log at trace level into the log directory, one file
/// per test binary and process. Does nothing without a log directory; runs once per process.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = log_dir() else { return };
        std::fs::create_dir_all(&dir).unwrap();
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "tests".into());
        let file =
            std::fs::File::create(dir.join(format!("{name}-{}.log", std::process::id()))).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

/// Output of an operator child process: the log directory, or nowhere.
pub fn child_output() -> Stdio {
    let Some(dir) = log_dir() else {
        return Stdio::null();
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("operator-processes.log"))
        .map(Stdio::from)
        .unwrap()
}
