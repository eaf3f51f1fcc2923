//! First start: an empty database gets an all-capability API key for org `default`, written
//! to `<data dir>/admin-key` (mode 0600). The key itself never reaches the log.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::auth::ApiKeyService;
use crate::domain::CapSet;
use crate::store::Store;

pub const DEFAULT_ORG: &str = "default";
const CLAIM: &str = "bootstrap_admin_key";

/// Creates the admin key on a fresh database; returns the file it was written to, if it did.
pub async fn ensure_admin_key(store: &Store, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if store.meta_get(CLAIM).await?.is_some() || store.count_api_keys().await? > 0 {
        return Ok(None);
    }
    // Several nodes may start at once on one PostgreSQL database: only the claim's winner creates.
    if !store
        .meta_claim(CLAIM, &crate::domain::now_ms().to_string())
        .await?
    {
        return Ok(None);
    }
    let keys = ApiKeyService::new(store.clone());
    let (_, secret) = keys
        .create(
            DEFAULT_ORG,
            "admin (first start)",
            CapSet::all(),
            None,
            Some("bootstrap".into()),
        )
        .await?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("admin-key");
    write_private(&path, &format!("{secret}\n"))?;
    Ok(Some(path))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(content.as_bytes())?;
    Ok(())
}
