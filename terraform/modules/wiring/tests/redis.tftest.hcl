# terraform test: the Redis sink URI names the password by reference, never by value.

variables {
  pipeline = "metrics_to_redis"
  option_values = {
    source      = "pubsub://projects/p/subscriptions/s"
    dead_letter = "bigquery://p:d.dead_letter?create=never"
    spec        = "builtin:api_metrics"
  }
}

run "tls_uri_with_secret_reference" {
  command = plan

  variables {
    redis_sink = {
      host        = "10.1.2.3"
      port        = 6378
      tls         = true
      auth_secret = "projects/p/secrets/redis-auth/versions/latest"
      sink_params = { mode = "hash", key = "metrics:{endpoint}:{window_start}", ttl = "3600" }
    }
  }

  assert {
    condition     = output.redis_uri == "rediss://10.1.2.3:6378/0?key=metrics:{endpoint}:{window_start}&mode=hash&password_secret=projects/p/secrets/redis-auth/versions/latest&ttl=3600"
    error_message = "the URI must be rediss://, with the sink parameters and password_secret (sorted)"
  }
  assert {
    condition     = output.parameters.sink == output.redis_uri
    error_message = "the Redis URI must become the sink option when no sink is given"
  }
}

run "no_redis_no_uri" {
  command = plan

  variables {
    option_values = {
      source      = "pubsub://projects/p/subscriptions/s"
      sink        = "stdout://"
      dead_letter = "bigquery://p:d.dead_letter?create=never"
      spec        = "builtin:api_metrics"
    }
  }

  assert {
    condition     = output.redis_uri == null
    error_message = "without a redis input there is no URI"
  }
}

run "a_password_in_the_params_is_refused" {
  command = plan

  variables {
    redis_sink = {
      host        = "10.1.2.3"
      port        = 6378
      tls         = true
      sink_params = { key = "k", password_env = "REDIS_PASSWORD" }
    }
  }

  expect_failures = [var.redis_sink]
}
