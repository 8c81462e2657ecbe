"""Logic shared by the stage entry points; each module has one job."""
