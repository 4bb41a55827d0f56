# A Kinesis data stream encrypted with KMS, and the least-privilege policy to read it, attached
# to a role that GCP workers assume with their Google identity (no AWS keys) and, optionally, to
# a group for key-based readers.

data "aws_caller_identity" "this" {}
data "aws_partition" "this" {}
data "aws_region" "this" {}

locals {
  create_key = var.kms_key_arn == null
  key_arn    = local.create_key ? aws_kms_key.stream[0].arn : var.kms_key_arn
  account    = data.aws_caller_identity.this.account_id
}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A KMS key policy must let the account root administer the key (AWS's default key policy); "*" there means this key only.
  #checkov:skip=CKV_AWS_111:A KMS key policy must let the account root administer the key (AWS's default key policy); "*" there means this key only.
  #checkov:skip=CKV_AWS_356:In a KMS key policy the resource "*" is the key itself, not every resource.
  # The account keeps administering the key through IAM; everything else is granted by IAM
  # policies scoped to this key (the reader policy below).
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.this.partition}:iam::${local.account}:root"]
    }
  }
}

resource "aws_kms_key" "stream" {
  count = local.create_key ? 1 : 0

  description             = "Encrypts the ${var.name} Kinesis stream."
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "stream" {
  count = local.create_key ? 1 : 0

  name          = "alias/kinesis-${var.name}"
  target_key_id = aws_kms_key.stream[0].key_id
}

resource "aws_kinesis_stream" "this" {
  name             = var.name
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = local.key_arn
  tags             = var.tags

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}

data "aws_iam_policy_document" "read" {
  statement {
    sid = "ReadTheStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
      "kinesis:SubscribeToShard",
    ]
    resources = [aws_kinesis_stream.this.arn]
  }
  statement {
    sid       = "DecryptTheStream"
    actions   = ["kms:Decrypt"]
    resources = [local.key_arn]
  }
}

resource "aws_iam_policy" "read" {
  name        = "${var.name}-kinesis-read"
  description = "Read the ${var.name} Kinesis stream (and decrypt it), nothing else."
  policy      = data.aws_iam_policy_document.read.json
  tags        = var.tags
}

data "aws_iam_policy_document" "trust_gcp" {
  count = length(var.reader_gcp_service_account_ids) > 0 ? 1 : 0

  statement {
    sid     = "GcpWorkersWithGoogleIdentity"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = ["accounts.google.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "accounts.google.com:aud"
      values   = var.reader_gcp_service_account_ids
    }
  }
}

resource "aws_iam_role" "reader" {
  count = length(var.reader_gcp_service_account_ids) > 0 ? 1 : 0

  name                 = "${var.name}-kinesis-reader"
  description          = "Assumed by the GCP Dataflow workers (Google web identity) to read ${var.name}."
  assume_role_policy   = data.aws_iam_policy_document.trust_gcp[0].json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "reader" {
  count = length(var.reader_gcp_service_account_ids) > 0 ? 1 : 0

  role       = aws_iam_role.reader[0].name
  policy_arn = aws_iam_policy.read.arn
}

resource "aws_iam_group" "readers" {
  count = var.reader_group_name == null ? 0 : 1

  name = var.reader_group_name
}

resource "aws_iam_group_policy_attachment" "readers" {
  count = var.reader_group_name == null ? 0 : 1

  group      = aws_iam_group.readers[0].name
  policy_arn = aws_iam_policy.read.arn
}

# ---- Alarms: a reader falling behind, and throttled reads or writes --------------------------

locals {
  alarms = {
    iterator_age = {
      metric      = "GetRecords.IteratorAgeMilliseconds"
      statistic   = "Maximum"
      threshold   = var.alarm_thresholds.iterator_age_seconds * 1000
      description = "The oldest record a reader of ${var.name} got is older than ${var.alarm_thresholds.iterator_age_seconds} s: the job is falling behind (or stopped reading)."
    }
    read_throttled = {
      metric      = "ReadProvisionedThroughputExceeded"
      statistic   = "Sum"
      threshold   = var.alarm_thresholds.throttled_requests
      description = "Reads of ${var.name} are throttled: too many readers or too few shards."
    }
    write_throttled = {
      metric      = "WriteProvisionedThroughputExceeded"
      statistic   = "Sum"
      threshold   = var.alarm_thresholds.throttled_requests
      description = "Writes to ${var.name} are throttled: add shards (PROVISIONED) or spread the partition keys."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "stream" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${replace(each.key, "_", "-")}"
  alarm_description   = each.value.description
  namespace           = "AWS/Kinesis"
  metric_name         = each.value.metric
  dimensions          = { StreamName = aws_kinesis_stream.this.name }
  statistic           = each.value.statistic
  period              = 60
  evaluation_periods  = var.alarm_thresholds.evaluation_minutes
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  ok_actions          = var.alarm_actions
  tags                = var.tags
}
