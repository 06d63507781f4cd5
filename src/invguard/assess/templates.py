"""The example configuration that ``invguard init`` writes."""

EXAMPLE_CONFIG = """\
# InvGuard assessment configuration. Run it with:  invguard assess -c invguard.yaml
# Relative paths are relative to this file. Reference: README, "Assessment".
version: 1
name: AT&T faces and census income classifiers

# CI gate: exit 1 when a finding is at or above this severity
# (critical, high, medium, low, info, none). `invguard assess --fail-on` overrides it.
fail_on: high

output_dir: invguard-assessment   # assessment.html, assessment.json, assessment.sarif
history_db: invguard-history.db   # finished jobs (for resume) and every run's risk scores
audit_db: invguard-audit.db       # tamper-evident audit log (invguard audit verify)

systems:
  # An undefended MLP face classifier. `reference` makes InvGuard train (and cache) its own
  # reference model on the data; for your own model use one of:
  #   target: {type: pytorch, program: models/mine.pt2}   (from torch.export.save)
  #   target: {type: pytorch, model: models/mine.safetensors, factory: "my_pkg.models:build",
  #            kwargs: {width: 32}}   (your own code builds the model; the weights fill it)
  #   target: {type: pytorch, model: models/faces-mlp.safetensors, arch: mlp}
  # and model_output: probabilities when the model ends in softmax.
  - id: faces-mlp
    name: Face recognition MLP
    owner: ml-platform@example.com
    target:
      type: pytorch
      reference: {arch: mlp, seed: 0}
    # Private training data: a built-in set (att-faces, att-faces-full, digits), or
    #   data: {folder: data/faces}    (folder/train/<class>/*.png, folder/test/<class>/*.png)
    #   data: {npz: data/faces.npz}   (x_train, y_train, x_test, y_test)
    data: {builtin: att-faces}
    # attacks: auto, miface, ppa, gmi, plg (generative prior, for CNNs), miface-zo, learned, brep
    attacks:
      - name: miface              # white-box MI-FACE (Fredrikson et al. 2015)
        seeds: [0]
        budget: {iterations: 1000, seconds: 300}
        params: {}                # e.g. {tv_weight: 0.05, l2_weight: 3.0}
    # Controls that cannot be measured from outside, declared by a named person.
    controls:
      - id: dp_training           # output_minimisation, query_limits, inference_monitoring, dp_training
        status: missing           # present, missing, not_applicable
        declared_by: alice@example.com
        note: trained with plain SGD

  # A softmax-regression model on the same faces.
  - id: faces-softmax
    name: Face recognition softmax regression
    owner: ml-platform@example.com
    target:
      type: pytorch
      reference: {arch: softmax, seed: 0}
    data: {builtin: att-faces}
    attacks:
      - name: miface
        seeds: [0]
        budget: {iterations: 1000}

  # A tabular model: can an attacker infer a training record's marital status from the census
  # income model, beyond what the record's other columns reveal (attribute inference, Fredrikson
  # et al. 2014; Mehnaz et al. 2022)? `reference` trains InvGuard's own model on the table's
  # documented split (logreg, tree, forest, gbdt, mlp); for your own model use
  #   target: {type: sklearn, model: models/census.skops}   (its <stem>.encoding.json beside it)
  #   target: {type: onnx, model: models/census.onnx}
  # and for your own table  data: {tabular: {csv: data/census.csv, label: income, sensitive: ...}}
  - id: census-income
    name: Census income classifier
    owner: ml-platform@example.com
    target: {type: reference, arch: tree}
    data:
      tabular: {dataset: adult, sensitive: marital-status, rows: 1000}
    attacks:
      - name: attribute           # baselines and every attribute attack the model allows
"""
