from solo_clamp.losses.clamp import clamp_loss_and_stats, clamp_loss_func

__all__ = ["clamp_loss_func", "clamp_loss_and_stats"]
