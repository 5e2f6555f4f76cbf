//! The EC2 calls the pool makes, and nothing else: list the instances of the pool's subnet,
//! launch one tagged instance, terminate owned instances, look up the worker AMI. Errors keep
//! EC2's error code so that capacity errors can be told from the rest.

use super::settings::LaunchSpec;
use std::collections::{BTreeMap, BTreeSet};
use test_looper_aws::ec2::error::ProvideErrorMetadata;
use test_looper_aws::ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceLifecycleType, InstanceMarketOptionsRequest,
    InstanceStateName, MarketType, ResourceType, SpotInstanceType, SpotMarketOptions, Tag,
    TagSpecification,
};
use test_looper_aws::ec2::Client;
use test_looper_core::pool::{InstanceState, InstanceTags, LaunchErrorKind, ObservedInstance};
use test_looper_core::pool::{Purchase, OWNER_TAG, WORKER_NAME_TAG};
use test_looper_core::protocol::Millis;
use thiserror::Error;

/// Tag holding the key of the instance's bootstrap script in the bootstrap bucket.
pub const BOOTSTRAP_KEY_TAG: &str = "test-looper:bootstrap-key";

/// EC2 error codes that mean "no capacity for this choice now" (try another type or
/// on-demand), as opposed to a configuration or permission problem.
const CAPACITY_ERROR_CODES: [&str; 6] = [
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientReservedInstanceCapacity",
];

/// State reason code EC2 gives an instance it reclaimed from the spot market.
const SPOT_TERMINATION_REASON: &str = "Server.SpotInstanceTermination";

/// A failed EC2 call.
#[derive(Debug, Error)]
#[error("{operation}: {code}: {message}")]
pub struct CloudError {
    pub operation: &'static str,
    /// EC2's error code (`InsufficientInstanceCapacity`), or `Transport` when none came back.
    pub code: String,
    pub message: String,
}

impl CloudError {
    fn from_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
        operation: &'static str,
        error: test_looper_aws::ec2::error::SdkError<E>,
    ) -> CloudError {
        let code = error.code().unwrap_or("Transport").to_string();
        let message = error.message().map(str::to_string).unwrap_or_else(|| {
            test_looper_aws::ec2::error::DisplayErrorContext(&error).to_string()
        });
        CloudError {
            operation,
            code,
            message,
        }
    }

    /// Whether trying again later may succeed (no answer, throttling, an EC2-side error).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Transport"
                | "Unavailable"
                | "ServiceUnavailable"
                | "InternalError"
                | "RequestLimitExceeded"
                | "Throttling"
        )
    }

    /// How the reconciler should treat this launch failure.
    pub fn launch_error_kind(&self) -> LaunchErrorKind {
        if CAPACITY_ERROR_CODES.contains(&self.code.as_str()) {
            LaunchErrorKind::InsufficientCapacity
        } else {
            LaunchErrorKind::Other
        }
    }
}

/// An instance as listed, with what the pool needs beyond the reconciler's view.
#[derive(Clone, Debug)]
pub struct ListedInstance {
    pub observed: ObservedInstance,
    /// EC2 reclaimed it from the spot market.
    pub spot_interrupted: bool,
    pub bootstrap_key: Option<String>,
    pub private_ip: Option<String>,
}

/// One instance to launch.
pub struct LaunchRequest<'a> {
    pub instance_type: &'a str,
    pub image_id: &'a str,
    pub purchase: Purchase,
    pub tags: Vec<(String, String)>,
    pub user_data: &'a str,
}

/// The pool's EC2 client.
#[derive(Clone)]
pub struct Ec2Cloud {
    client: Client,
    spec: LaunchSpec,
    /// The root device name of each AMI used (looked up once).
    root_devices: BTreeMap<String, String>,
    /// AMIs known to exist, and naked AMIs found missing (with when: asked again after
    /// [`MISSING_IMAGE_RECHECK_MS`]).
    known_images: BTreeSet<String>,
    missing_images: BTreeMap<String, Millis>,
}

/// How long a naked AMI found missing is not asked about again.
const MISSING_IMAGE_RECHECK_MS: Millis = 60_000;

impl Ec2Cloud {
    /// A client for the pool; checks that the subnet is in `vpc_id` and that `worker_ami`
    /// exists, and learns the AMI's root device.
    pub async fn connect(
        client: Client,
        spec: LaunchSpec,
        worker_ami: &str,
    ) -> Result<Ec2Cloud, CloudError> {
        let mut cloud = Ec2Cloud {
            client,
            spec,
            root_devices: BTreeMap::new(),
            known_images: BTreeSet::new(),
            missing_images: BTreeMap::new(),
        };
        cloud.check_subnet().await?;
        cloud.learn_image(worker_ami).await?;
        Ok(cloud)
    }

    async fn check_subnet(&self) -> Result<(), CloudError> {
        let subnets = self
            .client
            .describe_subnets()
            .subnet_ids(&self.spec.subnet)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeSubnets", e))?;
        let vpc = subnets
            .subnets()
            .iter()
            .find(|subnet| subnet.subnet_id() == Some(self.spec.subnet.as_str()))
            .and_then(|subnet| subnet.vpc_id());
        if vpc == Some(self.spec.vpc_id.as_str()) {
            return Ok(());
        }
        Err(CloudError {
            operation: "DescribeSubnets",
            code: "InvalidSubnet".into(),
            message: match vpc {
                Some(other) => format!(
                    "subnet {} is in {other}, not in vpc_id {}",
                    self.spec.subnet, self.spec.vpc_id
                ),
                None => format!(
                    "the subnet {} does not exist in this region",
                    self.spec.subnet
                ),
            },
        })
    }

    async fn learn_image(&mut self, image_id: &str) -> Result<(), CloudError> {
        let images = self
            .client
            .describe_images()
            .image_ids(image_id)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("DescribeImages", e))?;
        let image = images
            .images()
            .iter()
            .find(|image| image.image_id() == Some(image_id))
            .ok_or_else(|| CloudError {
                operation: "DescribeImages",
                code: "InvalidAMIID.NotFound".into(),
                message: format!("the AMI {image_id} does not exist in this region"),
            })?;
        if let Some(device) = image.root_device_name() {
            self.root_devices
                .insert(image_id.to_string(), device.to_string());
        }
        self.known_images.insert(image_id.to_string());
        Ok(())
    }

    /// Whether a one-shot item's naked AMI exists (asked once; a missing one again after a
    /// minute). A definition naming an AMI that does not exist must not make launches fail,
    /// which would hold up the pool's other launches of that type.
    pub async fn image_exists(&mut self, image_id: &str, now: Millis) -> bool {
        if self.known_images.contains(image_id) {
            return true;
        }
        if let Some(at) = self.missing_images.get(image_id) {
            if now.saturating_sub(*at) < MISSING_IMAGE_RECHECK_MS {
                return false;
            }
        }
        match self.learn_image(image_id).await {
            Ok(()) => {
                self.missing_images.remove(image_id);
                true
            }
            Err(error) => {
                tracing::warn!(%error, image_id, "ec2 pool: a naked AMI cannot be used");
                if !error.is_transient() {
                    self.missing_images.insert(image_id.to_string(), now);
                }
                false
            }
        }
    }

    /// Every instance of the pool's subnet, tagged or not, in every state EC2 still reports.
    pub async fn list(&self) -> Result<Vec<ListedInstance>, CloudError> {
        let mut pages = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("subnet-id")
                    .values(&self.spec.subnet)
                    .build(),
            )
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| CloudError::from_sdk("DescribeInstances", e))?;
            for reservation in page.reservations() {
                listed.extend(reservation.instances().iter().filter_map(listed_instance));
            }
        }
        Ok(listed)
    }

    /// Launches one instance; returns its id.
    pub async fn launch(&self, request: &LaunchRequest<'_>) -> Result<String, CloudError> {
        let tags: Vec<Tag> = request
            .tags
            .iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        let user_data = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            request.user_data,
        );
        let mut call = self
            .client
            .run_instances()
            .image_id(request.image_id)
            .instance_type(request.instance_type.into())
            .min_count(1)
            .max_count(1)
            .subnet_id(&self.spec.subnet)
            .security_group_ids(&self.spec.security_group)
            .key_name(&self.spec.keypair)
            .user_data(user_data)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags))
                    .build(),
            );
        if let Some(profile) = &self.spec.iam_instance_profile {
            call = call.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(profile)
                    .build(),
            );
        }
        if let (Some(device), Some(size)) = (
            self.root_devices.get(request.image_id),
            self.spec.disk_gb.get(request.instance_type),
        ) {
            call = call.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(i32::try_from(*size).unwrap_or(i32::MAX))
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        if request.purchase == Purchase::Spot {
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        let output = call
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("RunInstances", e))?;
        output
            .instances()
            .first()
            .and_then(|instance| instance.instance_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError {
                operation: "RunInstances",
                code: "NoInstance".into(),
                message: "EC2 accepted the launch but returned no instance".into(),
            })
    }

    /// Terminates instances (the caller has checked that the pool owns each one).
    pub async fn terminate(&self, instance_ids: &[String]) -> Result<(), CloudError> {
        if instance_ids.is_empty() {
            return Ok(());
        }
        self.client
            .terminate_instances()
            .set_instance_ids(Some(instance_ids.to_vec()))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk("TerminateInstances", e))?;
        Ok(())
    }
}

/// The reconciler's view of one listed instance (`None` without an id).
fn listed_instance(instance: &test_looper_aws::ec2::types::Instance) -> Option<ListedInstance> {
    let instance_id = instance.instance_id()?.to_string();
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(|tag| tag.value())
            .map(str::to_string)
    };
    let state = match instance.state().and_then(|state| state.name()) {
        Some(InstanceStateName::Pending) => InstanceState::Pending,
        Some(InstanceStateName::Running) => InstanceState::Running,
        Some(InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(InstanceStateName::Stopping | InstanceStateName::Stopped) => InstanceState::Stopped,
        Some(InstanceStateName::Terminated) => InstanceState::Terminated,
        // An unknown future state: count it as holding capacity.
        _ => InstanceState::Pending,
    };
    let purchase = match instance.instance_lifecycle() {
        Some(InstanceLifecycleType::Spot) => Purchase::Spot,
        _ => Purchase::OnDemand,
    };
    let launched_at = instance
        .launch_time()
        .and_then(|time| time.to_millis().ok())
        .and_then(|millis| u64::try_from(millis).ok())
        .unwrap_or(0);
    let spot_interrupted = instance
        .state_reason()
        .and_then(|reason| reason.code())
        .is_some_and(|code| code == SPOT_TERMINATION_REASON);
    Some(ListedInstance {
        observed: ObservedInstance {
            instance_type: instance
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            state,
            launched_at,
            purchase,
            image_id: instance.image_id().unwrap_or_default().to_string(),
            tags: InstanceTags {
                worker_name: tag(WORKER_NAME_TAG),
                owner: tag(OWNER_TAG),
            },
            instance_id,
        },
        spot_interrupted,
        bootstrap_key: tag(BOOTSTRAP_KEY_TAG),
        private_ip: instance.private_ip_address().map(str::to_string),
    })
}
