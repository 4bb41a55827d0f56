terraform {
  required_version = ">= 1.9, < 2.0"
  required_providers {
    # google_dataflow_flex_template_job exists only in the google-beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.0"
    }
  }
}
