terraform {
  # 1.9+: input validations may refer to other variables; the module uses no provider.
  required_version = ">= 1.9, < 2.0"
}
