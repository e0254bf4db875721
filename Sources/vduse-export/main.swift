import Core
print("vduse-export: not yet")
