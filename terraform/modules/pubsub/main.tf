# The input topic, its subscriptions (each with a dead-letter policy), the dead-letter topic and
# the subscription that keeps dead letters, and the IAM the Pub/Sub service agent needs to move
# messages to the dead-letter topic.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "input" {
  #checkov:skip=CKV_GCP_83:CMK is opt-in via var.kms_key_name; Google-managed encryption is the default for topics that carry no regulated data.
  project                    = var.project_id
  name                       = var.topic_name
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.topic_message_retention_duration
  labels                     = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:CMK is opt-in via var.kms_key_name; Google-managed encryption is the default for topics that carry no regulated data.
  project                    = var.project_id
  name                       = var.dead_letter_topic_name
  kms_key_name               = var.kms_key_name
  message_retention_duration = var.topic_message_retention_duration
  labels                     = var.labels
}

resource "google_pubsub_subscription" "this" {
  for_each = var.subscriptions

  project                      = var.project_id
  name                         = each.key
  topic                        = google_pubsub_topic.input.id
  ack_deadline_seconds         = each.value.ack_deadline_seconds
  message_retention_duration   = each.value.message_retention_duration
  retain_acked_messages        = false
  enable_message_ordering      = each.value.message_ordering
  enable_exactly_once_delivery = each.value.exactly_once_delivery
  filter                       = each.value.filter
  labels                       = var.labels

  # A streaming subscription must not be deleted after 31 idle days (the default).
  expiration_policy {
    ttl = ""
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = each.value.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = each.value.minimum_backoff
    maximum_backoff = each.value.maximum_backoff
  }

  # Without these two grants Pub/Sub cannot forward dead letters (it reports so on the
  # subscription), so create them first.
  depends_on = [google_pubsub_topic_iam_member.agent_publishes_dead_letters]
}

# The dead-letter topic's own subscription: it keeps dead letters for 7 days for inspection and
# replay. It has no dead-letter policy of its own on purpose (dead letters of dead letters would
# loop); nothing consumes it automatically.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project                    = var.project_id
  name                       = var.dead_letter_hold_subscription_name
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true
  labels                     = var.labels

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent publishes dead letters to the dead-letter topic...
resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

# ...and acknowledges them on the source subscription once forwarded.
resource "google_pubsub_subscription_iam_member" "agent_acknowledges_source" {
  for_each = google_pubsub_subscription.this

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
