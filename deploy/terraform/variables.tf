variable "project_name" {
  description = "Name of the CodeBuild project the bot starts shard builds on (PROMPTGATE_CODEBUILD_PROJECT)."
  type        = string
  default     = "promptgate-eval"
}

variable "image_uri" {
  description = "ECR URI of the worker image built from deploy/worker.Dockerfile, e.g. ACCOUNT.dkr.ecr.REGION.amazonaws.com/promptgate:TAG."
  type        = string
}

variable "image_repository_arn" {
  description = "ARN of the ECR repository holding image_uri; the build role may pull from it only."
  type        = string
}

variable "model_arns" {
  description = "Foundation-model and inference-profile ARNs the suites and evaluators use (bedrock:InvokeModel authorises Converse too)."
  type        = list(string)
  validation {
    condition     = length(var.model_arns) > 0
    error_message = "List at least one model ARN: the builds call nothing else."
  }
}

variable "guardrail_arns" {
  description = "Guardrail ARNs (ApplyGuardrail, and Converse with guardrailConfig); empty for none."
  type        = list(string)
  default     = []
}

variable "prefix" {
  description = "Key prefix of the runs in the bucket (PROMPTGATE_CODEBUILD_PREFIX); runs live under PREFIX/runs/."
  type        = string
  default     = "promptgate"
  validation {
    condition     = length(trim(var.prefix, "/")) > 0 && !strcontains(var.prefix, "*")
    error_message = "prefix must be a non-empty key prefix without wildcards."
  }
}

variable "bucket_name" {
  description = "Name of the runs bucket; empty lets Terraform generate one from bucket_prefix."
  type        = string
  default     = ""
}

variable "bucket_prefix" {
  description = "Prefix of the generated bucket name when bucket_name is empty."
  type        = string
  default     = "promptgate-runs-"
}

variable "retention_days" {
  description = "Days shard plans and results (which hold model outputs) are kept."
  type        = number
  default     = 7
}

variable "kms_key_arn" {
  description = "KMS key for the bucket, the build's artefacts and its log group; empty uses S3-managed keys (SSE-S3) and CodeBuild's default key."
  type        = string
  default     = ""
}

variable "compute_type" {
  description = "CodeBuild compute type of a shard build."
  type        = string
  default     = "BUILD_GENERAL1_SMALL"
  validation {
    condition     = contains(["BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE"], var.compute_type)
    error_message = "compute_type must be BUILD_GENERAL1_SMALL, _MEDIUM or _LARGE."
  }
}

variable "build_timeout_minutes" {
  description = "Timeout of one shard build."
  type        = number
  default     = 60
}

variable "log_retention_days" {
  description = "Days the build logs are kept."
  type        = number
  default     = 30
}

variable "invocation_logs" {
  description = "Bedrock model invocation logs the bot may read for shadow replay (SPEC 10): the bucket and key prefix Bedrock writes to. An empty bucket grants nothing."
  type = object({
    bucket = string
    prefix = string
  })
  default = { bucket = "", prefix = "" }
}

variable "invocation_logs_kms_key_arn" {
  description = "KMS key the invocation logs are encrypted with (kms:Decrypt for the bot); empty for none."
  type        = string
  default     = ""
}

variable "bot_role_name" {
  description = "Name of the role the bot runs as, created when a trust below is given."
  type        = string
  default     = "promptgate-bot"
}

variable "irsa_oidc_provider_arn" {
  description = "EKS: the cluster's IAM OIDC provider ARN; with it the bot's role trusts the Kubernetes service account irsa_service_account (the Helm chart's serviceAccount.irsaRoleArn takes the role ARN)."
  type        = string
  default     = ""
}

variable "irsa_service_account" {
  description = "NAMESPACE:NAME of the bot's Kubernetes service account."
  type        = string
  default     = "promptgate:promptgate"
}

variable "bot_trusted_services" {
  description = "AWS services that may assume the bot's role, e.g. [\"ecs-tasks.amazonaws.com\"] or [\"ec2.amazonaws.com\"]."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
