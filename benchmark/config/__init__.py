"""The suite: one YAML file parsed into validated, typed data (stage 1 of the data flow)."""
