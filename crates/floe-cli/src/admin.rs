//! `floe admin`: operator tasks that need no running broker.

use anyhow::bail;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an S3 bucket if it is missing, then check floe can use it (reachable,
    /// create-only puts honoured).
    InitBucket {
        /// s3://BUCKET[/PREFIX]
        #[arg(long)]
        store: String,
        /// S3-compatible endpoint URL [default: AWS_ENDPOINT_URL, else AWS].
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// Region [default: AWS_REGION, else us-east-1].
        #[arg(long)]
        s3_region: Option<String>,
        /// Path-style requests [default: on for a custom endpoint].
        #[arg(long)]
        s3_path_style: Option<bool>,
        /// PEM CA certificates trusted for the endpoint, besides the system's roots.
        #[arg(long)]
        s3_ca: Option<std::path::PathBuf>,
    },
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::InitBucket {
            store,
            s3_endpoint,
            s3_region,
            s3_path_style,
            s3_ca,
        } => {
            let floe_storage::StoreUrl::S3 { bucket, prefix } =
                floe_storage::StoreUrl::parse(&store)?
            else {
                bail!("init-bucket takes an s3://BUCKET/PREFIX store, got {store}");
            };
            let options = floe_storage::S3Options {
                endpoint: s3_endpoint,
                region: s3_region,
                path_style: s3_path_style,
                ca_file: s3_ca,
                ..floe_storage::S3Options::default()
            };
            let outcome = floe_storage::init_bucket(&bucket, &prefix, &options).await?;
            let what = match outcome {
                floe_storage::BucketInit::Created => "created",
                floe_storage::BucketInit::AlreadyOwned => "already exists (owned by you)",
            };
            println!("bucket {bucket} {what}; create-only puts are honoured; ready for floe");
            Ok(())
        }
    }
}
