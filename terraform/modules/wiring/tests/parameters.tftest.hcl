# terraform test: the Flex Template parameters built from the pipeline's option declarations.
# Runs offline (command = plan, no provider).

variables {
  pipeline = "events_to_bigquery"
  option_values = {
    source      = "pubsub://projects/p/subscriptions/s"
    sink        = "bigquery://p:d.events?create=never"
    dead_letter = "bigquery://p:d.dead_letter?create=never"
  }
}

run "keys_equal_every_option_name" {
  command = plan

  assert {
    condition     = toset(keys(output.parameters)) == toset([for option in jsondecode(file("pipeline_options.json")).events_to_bigquery.parameters : option.name])
    error_message = "the parameter keys must equal the pipeline's option names"
  }
  assert {
    condition     = output.parameter_names == [for option in jsondecode(file("pipeline_options.json")).events_to_bigquery.parameters : option.name]
    error_message = "parameter_names must list the template's parameters in order"
  }
  assert {
    condition     = output.parameter_names[0] == "pipeline" && output.parameters.pipeline == "events_to_bigquery"
    error_message = "the first parameter is the template selector, set to the pipeline's name"
  }
}

run "given_values_win_and_defaults_fill_the_rest" {
  command = plan

  variables {
    option_values = {
      source      = "pubsub://projects/p/subscriptions/s"
      sink        = "bigquery://p:d.events?create=never"
      dead_letter = "bigquery://p:d.dead_letter?create=never"
      counts_sink = "bigquery://p:d.counts?create=never"
    }
  }

  assert {
    condition     = output.parameters.source == "pubsub://projects/p/subscriptions/s"
    error_message = "a given value must be passed as it is"
  }
  assert {
    condition     = output.parameters.counts_sink == "bigquery://p:d.counts?create=never"
    error_message = "a given optional value must override the default"
  }
  assert {
    condition     = output.parameters.max_seconds == "0.0" && output.parameters.schema == "none"
    error_message = "options left out must carry their declared default"
  }
}

run "every_catalog_pipeline_gets_all_its_options" {
  command = plan

  variables {
    pipeline = "metrics_to_redis"
    option_values = {
      source      = "pubsub://projects/p/subscriptions/s"
      sink        = "rediss://10.0.0.3:6378/0?mode=hash&key=m:{endpoint}"
      dead_letter = "bigquery://p:d.dead_letter?create=never"
      spec        = "builtin:api_metrics"
    }
  }

  assert {
    condition     = toset(keys(output.parameters)) == toset([for option in jsondecode(file("pipeline_options.json")).metrics_to_redis.parameters : option.name])
    error_message = "the parameter keys must equal metrics_to_redis's option names"
  }
  assert {
    condition     = output.parameters.console == "false"
    error_message = "a boolean default must be passed as \"false\""
  }
}

run "unknown_option_is_refused" {
  command = plan

  variables {
    option_values = {
      source      = "pubsub://projects/p/subscriptions/s"
      sink        = "bigquery://p:d.events?create=never"
      dead_letter = "bigquery://p:d.dead_letter?create=never"
      no_such     = "x"
    }
  }

  expect_failures = [var.option_values]
}

run "missing_required_option_is_refused" {
  command = plan

  variables {
    option_values = {
      source = "pubsub://projects/p/subscriptions/s"
      sink   = "bigquery://p:d.events?create=never"
    }
  }

  expect_failures = [output.parameters]
}

run "unknown_pipeline_is_refused" {
  command = plan

  variables {
    pipeline = "no_such_pipeline"
  }

  expect_failures = [var.pipeline]
}
