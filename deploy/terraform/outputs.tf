output "codebuild_project" {
  description = "PROMPTGATE_CODEBUILD_PROJECT"
  value       = aws_codebuild_project.shards.name
}

output "codebuild_bucket" {
  description = "PROMPTGATE_CODEBUILD_BUCKET"
  value       = aws_s3_bucket.runs.id
}

output "codebuild_prefix" {
  description = "PROMPTGATE_CODEBUILD_PREFIX"
  value       = local.prefix
}

output "region" {
  description = "AWS_REGION for the bot (the region the project and bucket are in)."
  value       = data.aws_region.current.name
}

output "bot_role_arn" {
  description = "The bot's role (null when no trust was given): the Helm chart's serviceAccount.irsaRoleArn."
  value       = local.bot_role ? aws_iam_role.bot[0].arn : null
}

output "bot_policy_arn" {
  description = "The bot's policy, to attach to a role or user of your own."
  value       = aws_iam_policy.bot.arn
}

output "build_role_arn" {
  description = "The role the shard builds run as."
  value       = aws_iam_role.build.arn
}

output "bot_settings" {
  description = "The bot's environment for the CodeBuild executor (Helm: config; compose: environment)."
  value = {
    PROMPTGATE_EXECUTOR          = "codebuild"
    PROMPTGATE_CODEBUILD_PROJECT = aws_codebuild_project.shards.name
    PROMPTGATE_CODEBUILD_BUCKET  = aws_s3_bucket.runs.id
    PROMPTGATE_CODEBUILD_PREFIX  = local.prefix
    AWS_REGION                   = data.aws_region.current.name
  }
}
