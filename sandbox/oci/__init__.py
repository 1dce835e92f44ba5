"""``sandbox-oci``: an OCI runtime with runc's command line (DESIGN §12).

`translate` turns a bundle's config.json into a `sandbox.runtime.plan.LaunchPlan`
(pure); `container` holds a container's state folder and its detached
supervisor; `cli` is the thin command line.
"""
