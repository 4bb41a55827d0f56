# Stub: the real module's parameter check, on a built-in resource instead of the job.
resource "terraform_data" "job" {
  input = var.parameters

  lifecycle {
    precondition {
      condition     = toset(keys(var.parameters)) == toset(var.template_parameter_names)
      error_message = "the job's parameters must be exactly the template's parameters."
    }
  }
}
