# terraform test: names, labels and endpoint URIs of the stack (offline: no provider).

variables {
  project_id  = "acme-data-prod"
  prefix      = "acme"
  environment = "prod"
  pipeline    = "events_to_bigquery"
}

run "names_follow_the_convention" {
  command = plan

  assert {
    condition     = output.names.input_topic == "acme-prod-events-to-bigquery-input"
    error_message = "topic names are <prefix>-<env>-<pipeline-slug>-input"
  }
  assert {
    condition     = output.names.dataset_id == "acme_prod_streaming"
    error_message = "dataset ids use underscores"
  }
  assert {
    condition     = output.names.bucket == "acme-data-prod-acme-prod-dataflow"
    error_message = "the bucket name starts with the project id (bucket names are global)"
  }
}

run "pipeline_longer_than_40_characters_is_refused" {
  command = plan

  variables {
    pipeline = "a_very_long_pipeline_name_for_testing_limits"
  }

  expect_failures = [var.pipeline]
}

run "service_account_id_is_valid_for_long_names" {
  command = plan

  variables {
    pipeline = "metrics_to_redis_with_a_long_name"
  }

  assert {
    condition     = length(output.names.service_account_id) <= 30 && can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", output.names.service_account_id))
    error_message = "service account ids must be 6-30 valid characters"
  }
  assert {
    condition     = output.names.service_account_id != "df-acme-prod-metrics-to-re"
    error_message = "a hash keeps truncated service account ids distinct"
  }
}

run "labels_merge_extra_over_standard" {
  command = plan

  variables {
    labels = { team = "data", managed-by = "platform" }
  }

  assert {
    condition     = output.labels.pipeline == "events-to-bigquery" && output.labels.team == "data" && output.labels.managed-by == "platform"
    error_message = "extra labels are merged over the standard ones"
  }
}

run "uppercase_labels_are_refused" {
  command = plan

  variables {
    labels = { Team = "Data" }
  }

  expect_failures = [var.labels]
}

run "uris_are_the_suite_endpoints" {
  command = plan

  assert {
    condition     = output.uris.input_subscription == "pubsub://projects/acme-data-prod/subscriptions/acme-prod-events-to-bigquery-input-dataflow"
    error_message = "the source URI names the input subscription"
  }
  assert {
    condition     = output.uris.dead_letter_table == "bigquery://acme-data-prod:acme_prod_streaming.dead_letter?create=never"
    error_message = "the dead-letter URI names the dead-letter table, which Terraform owns (create=never)"
  }
}

run "unknown_environment_is_refused" {
  command = plan

  variables {
    environment = "qa"
  }

  expect_failures = [var.environment]
}

run "longest_inputs_still_give_valid_names" {
  command = plan

  variables {
    project_id  = "a-project-id-of-thirty-chars-x"
    prefix      = "abcdefghij"
    environment = "staging"
    pipeline    = "a_pipeline_name_of_forty_characters_xxxx"
  }

  assert {
    condition     = length(output.names.bucket) <= 63 && length(output.names.job_name) <= 63 && length(output.names.service_account_id) <= 30
    error_message = "the input limits must keep every name within its GCP limit"
  }
}
