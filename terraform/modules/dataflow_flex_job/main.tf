# The streaming Flex Template job. Its parameters must be exactly the template's parameters:
# the wiring module builds them from the pipeline's option declarations, and the precondition
# below refuses a plan where they differ.
#
# How an apply changes a running streaming job (google-beta provider): a change of the spec
# file, the parameters, the image, the labels or the other launch settings launches the new
# version with update=true under the same name, with transform_name_mapping; Dataflow refuses it
# when the graphs are not compatible, and the old job keeps running. A change of name, region,
# project, num_workers, max_workers or enable_streaming_engine replaces the job: the old one is
# stopped as on_delete says, then the new one starts without the old one's state.

resource "google_dataflow_flex_template_job" "this" {
  provider = google-beta

  project                 = var.project_id
  region                  = var.region
  name                    = var.name
  container_spec_gcs_path = var.container_spec_gcs_path
  parameters              = var.parameters
  service_account_email   = var.service_account_email
  temp_location           = var.temp_location
  staging_location        = var.staging_location
  sdk_container_image     = var.sdk_container_image
  network                 = var.network
  subnetwork              = var.subnetwork
  ip_configuration        = var.private_ips ? "WORKER_IP_PRIVATE" : "WORKER_IP_PUBLIC"
  max_workers             = var.max_workers
  num_workers             = var.num_workers
  machine_type            = var.machine_type
  enable_streaming_engine = var.enable_streaming_engine
  kms_key_name            = var.kms_key_name
  additional_experiments  = var.additional_experiments
  labels                  = var.labels
  on_delete               = var.on_delete
  launcher_machine_type   = var.launcher_machine_type
  autoscaling_algorithm   = var.autoscaling_algorithm

  transform_name_mapping       = var.transform_name_mapping
  skip_wait_on_job_termination = var.skip_wait_on_job_termination

  lifecycle {
    precondition {
      condition     = toset(keys(var.parameters)) == toset(var.template_parameter_names)
      error_message = "the job's parameters must be exactly the template's parameters. Unknown: [${join(", ", sort(tolist(setsubtract(keys(var.parameters), var.template_parameter_names))))}]; missing: [${join(", ", sort(tolist(setsubtract(var.template_parameter_names, keys(var.parameters)))))}]."
    }
  }
}
