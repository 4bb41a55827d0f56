# terraform test: table specs from the suite's schema files, and the CDC replica shape.

variables {
  pipeline = "events_to_bigquery"
  option_values = {
    source      = "pubsub://projects/p/subscriptions/s"
    sink        = "bigquery://p:d.events?create=never"
    dead_letter = "bigquery://p:d.dead_letter?create=never"
  }
  tables = {
    events = {
      schema_json     = "{\"fields\": [{\"name\": \"event_id\", \"type\": \"STRING\", \"mode\": \"REQUIRED\"}, {\"name\": \"ts\", \"type\": \"TIMESTAMP\"}, {\"name\": \"event_type\", \"type\": \"STRING\"}]}"
      description     = "events"
      partition_field = "ts"
      clustering      = ["event_type"]
    }
    dead_letter = {
      schema_json               = "[{\"name\": \"error_timestamp\", \"type\": \"TIMESTAMP\", \"mode\": \"REQUIRED\"}, {\"name\": \"pipeline\", \"type\": \"STRING\"}]"
      description               = "dead letters"
      partition_field           = "error_timestamp"
      partition_expiration_days = 30
    }
  }
}

run "schema_files_of_both_forms_become_field_lists" {
  command = plan

  assert {
    condition     = jsondecode(output.tables.events.schema)[1].name == "ts" && length(jsondecode(output.tables.events.schema)) == 3
    error_message = "a {\"fields\": [...]} schema must become its field list"
  }
  assert {
    condition     = jsondecode(output.tables.dead_letter.schema)[0].name == "error_timestamp"
    error_message = "a field-list schema must be kept as it is"
  }
  assert {
    condition     = output.tables.dead_letter.partition_expiration_days == 30 && output.tables.events.partition_expiration_days == null
    error_message = "partition expiration must be carried through"
  }
}

run "the_real_schema_files_are_accepted" {
  command = plan

  variables {
    tables = {
      events = {
        schema_json     = file("../../../pipelines/schemas/events.json")
        description     = "events"
        partition_field = "ts"
        clustering      = ["event_type", "user_id"]
      }
      dead_letter = {
        schema_json     = file("../../schemas/dead_letter.json")
        description     = "dead letters"
        partition_field = "error_timestamp"
        clustering      = ["pipeline", "step", "reason"]
      }
    }
    cdc = {
      source_tables       = ["inventory.customers"]
      staging_schema_json = file("../../schemas/cdc_staging.json")
      replica_schema_json = file("../../schemas/cdc_replica.json")
    }
  }

  assert {
    condition     = toset(keys(output.tables)) == toset(["events", "dead_letter", "inventory_customers", "inventory_customers_changelog"])
    error_message = "the suite tables and one replica + one staging table per CDC source table must be shaped"
  }
}

run "partition_field_must_be_a_time_field" {
  command = plan

  variables {
    tables = {
      events = {
        schema_json     = "[{\"name\": \"event_id\", \"type\": \"STRING\"}]"
        description     = "events"
        partition_field = "event_id"
      }
    }
  }

  expect_failures = [output.tables]
}

run "clustering_on_a_missing_field_is_refused" {
  command = plan

  variables {
    tables = {
      events = {
        schema_json     = "[{\"name\": \"ts\", \"type\": \"TIMESTAMP\"}]"
        description     = "events"
        partition_field = "ts"
        clustering      = ["nope"]
      }
    }
  }

  expect_failures = [output.tables]
}

run "more_than_four_clustering_fields_are_refused" {
  command = plan

  variables {
    tables = {
      events = {
        schema_json     = "[{\"name\": \"ts\", \"type\": \"TIMESTAMP\"}]"
        description     = "events"
        partition_field = "ts"
        clustering      = ["a", "b", "c", "d", "e"]
      }
    }
  }

  expect_failures = [var.tables]
}

run "cdc_table_names_with_whitespace_are_refused" {
  command = plan

  variables {
    cdc = {
      source_tables       = ["inventory.customers", "shop-eu.order lines"]
      staging_schema_json = file("../../schemas/cdc_staging.json")
      replica_schema_json = file("../../schemas/cdc_replica.json")
      staging_suffix      = "_staged"
    }
  }

  expect_failures = [var.cdc]
}

run "cdc_replica_and_staging_partitioning_and_clustering" {
  command = plan

  variables {
    cdc = {
      source_tables       = ["inventory.customers", "shop-eu.orders"]
      staging_schema_json = file("../../schemas/cdc_staging.json")
      replica_schema_json = file("../../schemas/cdc_replica.json")
    }
  }

  assert {
    condition     = output.cdc_tables["shop-eu.orders"].replica == "shop_eu_orders" && output.cdc_tables["shop-eu.orders"].staging == "shop_eu_orders_changelog"
    error_message = "non-name characters become _, and staging tables get the _changelog suffix"
  }
  assert {
    condition     = output.tables.inventory_customers.partition_field == "_merged_at" && output.tables.inventory_customers_changelog.partition_field == "ingest_time"
    error_message = "replicas are partitioned on _merged_at, staging tables on ingest_time"
  }
  assert {
    condition     = output.tables.inventory_customers.clustering == tolist(["key"]) && output.tables.inventory_customers_changelog.partition_expiration_days == 30
    error_message = "CDC tables are clustered by key; staging partitions expire"
  }
}

run "cdc_schemas_must_be_the_sinks" {
  command = plan

  variables {
    cdc = {
      source_tables       = ["inventory.customers"]
      staging_schema_json = file("../../schemas/dead_letter.json")
      replica_schema_json = file("../../schemas/cdc_replica.json")
    }
  }

  expect_failures = [var.cdc]
}

run "tables_alone_need_no_pipeline" {
  command = plan

  variables {
    pipeline      = null
    option_values = {}
  }

  assert {
    condition     = length(output.parameters) == 0 && length(output.tables) == 2 && length(output.cdc_tables) == 0
    error_message = "without a pipeline the module shapes tables and builds no parameters"
  }
}
