"""PatchCore (Roth et al., 2022) as a baseline inside the framework: a memory bank of normal patch features, a greedy
k-center coreset, nearest-neighbour distance maps. It plugs into ``mtfcdd.model.pipeline.InferencePipeline`` as a
one-channel (mode ``single``) network, so it is validated, tested, reported and exported like MultiTypeFCDD."""
