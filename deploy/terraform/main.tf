# The AWS side of promptgate's CodeBuild executor, as deploy/cloudformation.yaml builds
# it: the runs bucket, the CodeBuild project, the build role, and the bot's policy
# (plus, optionally, the bot's role and read access to Bedrock invocation logs for
# shadow replay). The policies are those of deploy/iam/*.json; tests/deploy.rs checks
# that their statements match.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  prefix     = trim(var.prefix, "/")
  runs_arn   = "${aws_s3_bucket.runs.arn}/${local.prefix}/runs/*"
  use_kms    = var.kms_key_arn != ""
  shadow     = var.invocation_logs.bucket != ""
  logs_pfx   = trim(var.invocation_logs.prefix, "/")
  bot_role   = var.irsa_oidc_provider_arn != "" || length(var.bot_trusted_services) > 0
  oidc_host  = replace(var.irsa_oidc_provider_arn, "/^arn:[^:]+:iam::[0-9]+:oidc-provider\\//", "")
  # A placeholder: every build the bot starts sends deploy/buildspec.yml as
  # buildspecOverride, so this one only ever runs if someone starts a build by hand.
  placeholder_buildspec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo 'promptgate sends its own buildspec' && exit 1\n"
}

# ---- the runs bucket: shard plans and results --------------------------------------

resource "aws_s3_bucket" "runs" {
  bucket        = var.bucket_name != "" ? var.bucket_name : null
  bucket_prefix = var.bucket_name == "" ? var.bucket_prefix : null
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "runs" {
  bucket                  = aws_s3_bucket.runs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "runs" {
  bucket = aws_s3_bucket.runs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "runs" {
  bucket = aws_s3_bucket.runs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.use_kms ? "aws:kms" : "AES256"
      kms_master_key_id = local.use_kms ? var.kms_key_arn : null
    }
    bucket_key_enabled = local.use_kms
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "runs" {
  bucket = aws_s3_bucket.runs.id
  rule {
    id     = "expire-runs"
    status = "Enabled"
    filter {
      prefix = "${local.prefix}/runs/"
    }
    expiration {
      days = var.retention_days
    }
  }
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "runs_tls_only" {
  statement {
    sid       = "DenyPlainHttp"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.runs.arn, "${aws_s3_bucket.runs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "runs" {
  bucket = aws_s3_bucket.runs.id
  policy = data.aws_iam_policy_document.runs_tls_only.json
  # The public access block first, so the policy is never briefly evaluated without it.
  depends_on = [aws_s3_bucket_public_access_block.runs]
}

# ---- the build: logs, role, project ------------------------------------------------

resource "aws_cloudwatch_log_group" "build" {
  name              = "/aws/codebuild/${var.project_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.use_kms ? var.kms_key_arn : null
  tags              = var.tags
}

data "aws_iam_policy_document" "build_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codebuild.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "build" {
  name_prefix        = "${var.project_name}-build-"
  description        = "promptgate shard builds: the listed models and guardrails, the run prefix, their logs and image."
  assume_role_policy = data.aws_iam_policy_document.build_trust.json
  tags               = var.tags
}

data "aws_iam_policy_document" "build" {
  statement {
    sid       = "CallTheListedModels"
    effect    = "Allow"
    actions   = ["bedrock:InvokeModel"]
    resources = var.model_arns
  }
  dynamic "statement" {
    for_each = length(var.guardrail_arns) > 0 ? [1] : []
    content {
      sid       = "ApplyTheListedGuardrails"
      effect    = "Allow"
      actions   = ["bedrock:ApplyGuardrail"]
      resources = var.guardrail_arns
    }
  }
  statement {
    sid       = "ReadPlansWriteResultsUnderTheRunPrefix"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.runs_arn]
  }
  statement {
    sid       = "BuildLogs"
    effect    = "Allow"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.build.arn}:*"]
  }
  statement {
    sid       = "PullTheWorkerImage"
    effect    = "Allow"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [var.image_repository_arn]
  }
  statement {
    sid       = "EcrLoginHasNoResourceLevelPermission"
    effect    = "Allow"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = local.use_kms ? [1] : []
    content {
      sid       = "UseTheRunKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "build" {
  name   = "promptgate-shard"
  role   = aws_iam_role.build.id
  policy = data.aws_iam_policy_document.build.json
}

resource "aws_codebuild_project" "shards" {
  name           = var.project_name
  description    = "promptgate shard builds: the bot sends deploy/buildspec.yml with every build."
  service_role   = aws_iam_role.build.arn
  build_timeout  = var.build_timeout_minutes
  queued_timeout = 30
  encryption_key = local.use_kms ? var.kms_key_arn : null
  tags           = var.tags

  # No checkout: the plan in S3 is self-contained, and the bot sends
  # sourceTypeOverride NO_SOURCE with every build anyway.
  source {
    type      = "NO_SOURCE"
    buildspec = local.placeholder_buildspec
  }

  artifacts {
    type = "NO_ARTIFACTS"
  }

  environment {
    type                        = "LINUX_CONTAINER"
    compute_type                = var.compute_type
    image                       = var.image_uri
    image_pull_credentials_type = "SERVICE_ROLE"
    privileged_mode             = false
  }

  logs_config {
    cloudwatch_logs {
      status     = "ENABLED"
      group_name = aws_cloudwatch_log_group.build.name
    }
    s3_logs {
      status = "DISABLED"
    }
  }

  depends_on = [aws_iam_role_policy.build]
}

# ---- the bot: its policy, and its role when a trust is given -------------------------

data "aws_iam_policy_document" "bot" {
  statement {
    sid       = "RunShardBuildsOnTheEvalProjectOnly"
    effect    = "Allow"
    actions   = ["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"]
    resources = [aws_codebuild_project.shards.arn]
  }
  statement {
    sid       = "WritePlansReadResultsUnderTheRunPrefix"
    effect    = "Allow"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.runs_arn]
  }
  dynamic "statement" {
    for_each = local.use_kms ? [1] : []
    content {
      sid       = "UseTheRunKey"
      effect    = "Allow"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
  # Shadow replay reads every object under the invocation-log prefix.
  dynamic "statement" {
    for_each = local.shadow ? [1] : []
    content {
      sid       = "ListTheInvocationLogs"
      effect    = "Allow"
      actions   = ["s3:ListBucket"]
      resources = ["arn:${local.partition}:s3:::${var.invocation_logs.bucket}"]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [local.logs_pfx == "" ? "*" : "${local.logs_pfx}/*"]
      }
    }
  }
  dynamic "statement" {
    for_each = local.shadow ? [1] : []
    content {
      sid       = "ReadTheInvocationLogs"
      effect    = "Allow"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::${var.invocation_logs.bucket}/${local.logs_pfx == "" ? "" : "${local.logs_pfx}/"}*"]
    }
  }
  dynamic "statement" {
    for_each = local.shadow && var.invocation_logs_kms_key_arn != "" ? [1] : []
    content {
      sid       = "DecryptTheInvocationLogs"
      effect    = "Allow"
      actions   = ["kms:Decrypt"]
      resources = [var.invocation_logs_kms_key_arn]
    }
  }
}

resource "aws_iam_policy" "bot" {
  name_prefix = "${var.project_name}-bot-"
  description = "Attach to the role or user promptgate serve runs as."
  policy      = data.aws_iam_policy_document.bot.json
  tags        = var.tags
}

data "aws_iam_policy_document" "bot_trust" {
  dynamic "statement" {
    for_each = var.irsa_oidc_provider_arn != "" ? [1] : []
    content {
      sid     = "TheBotsKubernetesServiceAccount"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.irsa_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:sub"
        values   = ["system:serviceaccount:${var.irsa_service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
  dynamic "statement" {
    for_each = length(var.bot_trusted_services) > 0 ? [1] : []
    content {
      sid     = "TheServiceTheBotRunsOn"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = var.bot_trusted_services
      }
      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_iam_role" "bot" {
  count              = local.bot_role ? 1 : 0
  name               = var.bot_role_name
  description        = "promptgate serve: starts and watches shard builds; calls no model."
  assume_role_policy = data.aws_iam_policy_document.bot_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "bot" {
  count      = local.bot_role ? 1 : 0
  role       = aws_iam_role.bot[0].name
  policy_arn = aws_iam_policy.bot.arn
}
